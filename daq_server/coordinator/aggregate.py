"""Joining the hosts' answers into the one answer of the whole detector (stats, deployment)."""

from __future__ import annotations

from daq_server.coordinator.hosts import HostError, HostLink
from daq_server.receive.image_source import RECEIVER_COUNTERS
from daq_server.serve.stats import zero_stats


def joined_stats(hosts: list[HostLink]) -> dict:
    """Bytes/s and the receivers' counters summed over the hosts; images/s the slowest host's (an
    image is whole when every part of it is); ``hosts``: each host's own stats (or its error)."""
    per_host: dict[str, dict] = {}
    for host in hosts:
        try:
            per_host[host.name] = host.get("/daq/stats", "stats", timeout=2.0)
        except HostError as error:
            per_host[host.name] = {"error": str(error)}
    answered = [s for s in per_host.values() if "error" not in s]
    stats = zero_stats()
    for side in ("detector", "writer"):
        if answered:
            stats[side]["bytes_per_second"] = sum(float(s[side]["bytes_per_second"]) for s in answered)
            stats[side]["images_per_second"] = min(float(s[side]["images_per_second"]) for s in answered)
    for key in RECEIVER_COUNTERS:
        stats["detector"][key] = sum(int(s["detector"].get(key, 0)) for s in answered)
    stats["hosts"] = per_host
    return stats


def joined_deployment(hosts: list[HostLink]) -> dict:
    """SUCCESS when every host's receiver runs; each host's status under ``servers``."""
    servers, messages, starts, stops, ids = {}, [], [], [], []
    for host in hosts:
        try:
            d = host.get("/daq/deployment", "deployment", timeout=2.0)
        except HostError as error:
            servers[host.name] = "FAILED"
            messages.append(str(error))
            continue
        servers[host.name] = d.get("status", "FAILED")
        messages.append(f"{host.name}: {d.get('message', '')}")
        ids.append(str(d.get("config_id", "")))
        starts.append(d.get("stats", {}).get("start_time"))
        stops.append(d.get("stats", {}).get("stop_time"))
    statuses = set(servers.values())
    status = "SUCCESS" if statuses == {"SUCCESS"} else "RUNNING" if statuses <= {"SUCCESS", "RUNNING"} else "FAILED"
    return {
        "config_id": ",".join(ids),
        "message": " ".join(messages),
        "servers": servers,
        "stats": {
            "start_time": min((t for t in starts if t is not None), default=None),
            "stop_time": None if None in stops or not stops else max(stops),
        },
        "status": status,
    }


class JoinedStats:
    """``current()`` as the REST layer's /daq/stats expects of a service's ``stats``."""

    def __init__(self, hosts: list[HostLink]):
        self._hosts = hosts

    def current(self) -> dict:
        return joined_stats(self._hosts)
