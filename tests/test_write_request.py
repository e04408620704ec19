"""Bad write requests get a clear StdDaqAdminException and change nothing."""

import pytest

from std_daq_client import StdDaqAdminException


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"n_images": 10}, "output_file is mandatory"),
        ({"output_file": "relative/file.h5", "n_images": 10}, "absolute"),
        ({"output_file": "/etc/outside.h5", "n_images": 10}, "data root"),
        ({"output_file": "{root}/no_extension", "n_images": 10}, "extension"),
        ({"output_file": "{root}/missing/file.h5", "n_images": 10}, "does not exist"),
        ({"output_file": "{root}/../escape.h5", "n_images": 10}, "data root"),
        ({"output_file": "{root}/f.h5"}, "n_images is mandatory"),
        ({"output_file": "{root}/f.h5", "n_images": 0}, "at least 1"),
        ({"output_file": "{root}/f.h5", "n_images": "ten"}, "integer"),
        ({"output_file": "{root}/f.h5", "n_images": 5, "colour": "red"}, "Unknown field"),
    ],
)
def test_invalid_request_is_refused(daq, request_body, message):
    body = {k: v.format(root=daq.data_root) if isinstance(v, str) else v for k, v in request_body.items()}
    with pytest.raises(StdDaqAdminException, match=message):
        daq.client.start_writer_async(body)
    assert daq.client.get_status()["state"] == "READY"
    assert daq.client.get_logs(5) == []


def test_existing_file_is_never_overwritten(daq):
    existing = daq.data_root / "precious.h5"
    existing.write_bytes(b"already written data")
    with pytest.raises(StdDaqAdminException, match="exists already"):
        daq.client.start_writer_async({"output_file": str(existing), "n_images": 3})
    assert existing.read_bytes() == b"already written data"


def test_numeric_string_n_images_is_accepted(daq):
    status = daq.client.start_writer_async({"output_file": str(daq.data_root / "s.h5"), "n_images": "7"})
    assert status["acquisition"]["info"]["n_images"] == 7
    daq.client.stop_writer()
