"""The writing path's CPU priority on a busy machine: ahead of the machine's ordinary work.

Linux shares the CPU first between *autogroups* (one per session, when
``/proc/sys/kernel/sched_autogroup_enabled`` is 1, the default of most distributions) and only then
between the threads inside a group by their nice values. A nice value alone therefore does not
put the DAQ ahead of a busy process of another session: each session gets an equal share. Measured
here with the simulator flat out in its own session, the compressing thread at nice -10 waited
for the CPU half of the time while the simulator ran undisturbed. So the server, when it may
(root or ``CAP_SYS_NICE``), runs at ``--writer-nice`` from its start: every thread (but the
receive threads, which are real-time) and the writer processes with their compressing threads,
which inherit it; and when it leads its own session (as under systemd or ``setsid``) its
session's group gets that nice as well. It never changes the group of a shell it was started from.
"""

from __future__ import annotations

import os
import threading

AUTOGROUP_SWITCH = "/proc/sys/kernel/sched_autogroup_enabled"


def autogroups_enabled() -> bool:
    try:
        with open(AUTOGROUP_SWITCH) as switch:
            return switch.read().strip() == "1"
    except OSError:
        return False


def raise_priority(nice: int) -> list[str]:
    """Give this process ``nice`` (its threads started from now on and the processes it starts inherit
    it; call it before starting any) and, when it leads its session, its session's autogroup.

    Returns what the operator should know: the privilege missing, or a session shared with a shell."""
    if nice == 0:
        return []
    notes = []
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as error:
        return [
            f"The server and its writer processes run at normal priority, not nice {nice}: {error.strerror} "
            "(run as root or grant CAP_SYS_NICE), so a busy machine may slow the writing."
        ]
    if not autogroups_enabled():
        return notes
    if os.getsid(0) != os.getpid():
        notes.append(
            "The server shares the CPU share of the session it was started from (the kernel's autogroups): "
            "start it in its own session (a systemd service, or setsid) to put the writing ahead of other sessions."
        )
        return notes
    try:
        with open("/proc/self/autogroup", "w") as group:
            group.write(str(nice))
    except OSError as error:
        notes.append(f"The server's session keeps the normal CPU share, not nice {nice}: {error.strerror}.")
    return notes


__all__ = ["autogroups_enabled", "raise_priority"]
