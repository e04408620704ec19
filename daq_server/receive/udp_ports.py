"""Who holds a UDP port: for the message when the receiver cannot bind its ports.

Linux only (``/proc/net/udp``); the process is found when this server may read its ``/proc``
entries (as root, or the same user). Best effort: anything unreadable just names no process.
"""

from __future__ import annotations

import os
from pathlib import Path


def _socket_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_holders(port: int) -> list[str]:
    """``"pid 1234 (std_daq_server)"`` for each other process with a UDP socket bound to ``port``."""
    wanted = {f"socket:[{inode}]" for inode in _socket_inodes(port)}
    holders = []
    for pid in filter(str.isdigit, os.listdir("/proc") if wanted else ()):
        if int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in fds):
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                holders.append(f"pid {pid} ({name})")
        except OSError:
            continue
    return holders


def describe_port_conflict(message: str, start_port: int, n_ports: int) -> str:
    """``message`` plus the processes that hold any of the ports, when they can be found."""
    holders = sorted({h for port in range(start_port, start_port + n_ports) for h in port_holders(port)})
    return f"{message}; held by {', '.join(holders)}" if holders else message
