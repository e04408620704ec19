"""Status streams on a real redis-server, parsed with the client's parsers."""

import json
import threading
import time

import pytest
import redis
from conftest import RunningDaq, jungfrau_config, wait_for

from std_daq_client.redis_parsers import all_channels, channel, parse_message, parse_status


@pytest.fixture
def daq_with_redis(tmp_path, redis_url):
    running = RunningDaq(tmp_path, jungfrau_config(name="JF-redis"), extra_args=["--redis-url", redis_url]).start()
    yield running
    running.stop()


class Subscriber:
    """Collects every message of the detector's channels in a background thread."""

    def __init__(self, url: str, detector_name: str):
        self.pubsub = redis.Redis.from_url(url).pubsub()
        self.pubsub.subscribe(*all_channels(detector_name))
        self.messages: list[tuple[str, str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                kind, data = parse_message(message)
                self.messages.append((message["channel"].decode(), kind, data))

    def of_kind(self, kind):
        return [data for _, k, data in self.messages if k == kind]

    def close(self):
        self._stop.set()
        self._thread.join()
        self.pubsub.close()


def test_a_subscriber_sees_the_acquisition(daq_with_redis, redis_url):
    daq = daq_with_redis
    subscriber = Subscriber(redis_url, "JF-redis")
    wait_for(lambda: subscriber.of_kind("stats"), timeout=5)  # subscribed and the 1 Hz stream flows
    detector = daq.simulator(first_frame=1)
    detector.start()
    try:
        final = daq.client.start_writer_sync({"output_file": str(daq.data_root / "r.h5"), "n_images": 20})
        applied = daq.client.set_config({"writer_user_id": 0})
        wait_for(lambda: subscriber.of_kind("config") and subscriber.of_kind("acquisition"), timeout=5)
        time.sleep(1.2)
    finally:
        detector.stop()
        subscriber.close()

    states = [s["acquisition"]["state"] for s in subscriber.of_kind("status")]
    assert states[:4] == ["WAITING_IMAGES", "WRITING", "FLUSHING_IMAGES", "FINISHED"]
    assert subscriber.of_kind("status")[-1] == final
    assert subscriber.of_kind("acquisition") == [daq.client.get_logs(1)[0]]
    assert subscriber.of_kind("config") == [applied]
    stats = subscriber.of_kind("stats")
    assert len(stats) >= 2
    assert any(s["writer"]["images_per_second"] > 0 for s in stats)
    assert {c for c, _, _ in subscriber.messages} <= set(all_channels("JF-redis"))
    assert channel("JF-redis", "status") in {c for c, _, _ in subscriber.messages}


def test_parsers_reject_foreign_messages():
    with pytest.raises(RuntimeError, match="not a std-daq status message"):
        parse_message({"type": "message", "data": b"hello"})
    with pytest.raises(RuntimeError, match="expected a 'status' message"):
        parse_status(json.dumps({"kind": "stats", "data": {}}))


def test_server_runs_without_redis_reachable(tmp_path):
    from conftest import free_tcp_port

    dead = f"redis://127.0.0.1:{free_tcp_port()}/0"
    daq = RunningDaq(tmp_path, jungfrau_config(), extra_args=["--redis-url", dead]).start()
    try:
        status, _ = daq.acquire("x.h5", 5, first_frame=1)
        assert status["acquisition"]["message"] == "Completed."
    finally:
        daq.stop()
