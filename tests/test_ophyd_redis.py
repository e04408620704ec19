"""With a Redis URL the device also listens to the DAQ's status channel (real redis-server)."""

from __future__ import annotations

import pytest
from bluesky import RunEngine
from bluesky import plans as bp
from conftest import RunningDaq, jungfrau_config

from ophyd_stddaq import StdDaq


@pytest.fixture
def daq_with_redis(tmp_path, redis_url):
    running = RunningDaq(tmp_path, jungfrau_config(name="JF-ophyd"), extra_args=["--redis-url", redis_url]).start()
    detector = running.simulator(first_frame=1)
    detector.start()
    yield running
    detector.stop()
    running.stop()


def test_fly_scan_hears_the_status_changes_on_redis(daq_with_redis, redis_url):
    daq = daq_with_redis
    # a slow poll: the end of the acquisition is seen through Redis long before the next poll
    det = StdDaq(daq.url, name="daq", directory=str(daq.data_root), redis_url=redis_url, poll_interval=0.5)
    det.n_images.put(20)
    documents = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: documents.append(name))

    RE(bp.fly([det]))

    assert det.monitor.redis_messages >= 1
    assert documents.count("datum") == 20
    assert daq.client.get_status()["acquisition"]["message"] == "Completed."


def test_an_unreachable_redis_falls_back_to_polling(sending):
    daq = sending
    det = StdDaq(daq.url, name="daq", directory=str(daq.data_root), redis_url="redis://127.0.0.1:1/0")
    det.n_images.put(5)
    RunEngine({})(bp.count([det], num=5))
    assert det.monitor.redis_messages == 0
    assert daq.client.get_status()["acquisition"]["message"] == "Completed."
