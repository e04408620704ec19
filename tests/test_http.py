"""The wire format an existing client relies on: envelope, non-200 only for non-API requests."""

import requests


def test_state_problems_are_http_200_with_status_error(daq):
    answer = requests.post(daq.url + "/writer/write_async", json={"output_file": "x", "n_images": 1}, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["status"] == "error"
    assert "absolute" in answer.json()["message"]


def test_ok_envelope(daq):
    answer = requests.get(daq.url + "/writer/status", timeout=5).json()
    assert answer["status"] == "ok"
    assert isinstance(answer["message"], str)
    assert answer["writer"]["state"] == "READY"


def test_unknown_path_is_404_with_json_message(daq):
    answer = requests.get(daq.url + "/no/such/thing", timeout=5)
    assert answer.status_code == 404
    assert answer.json()["status"] == "error"
    assert "404" in answer.json()["message"]


def test_body_that_is_not_json_is_400_with_json_message(daq):
    answer = requests.post(
        daq.url + "/daq/config", data="{not json", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["message"]
    assert requests.get(daq.url + "/daq/config", timeout=5).json()["config"]["detector_name"] == "JF-test"
