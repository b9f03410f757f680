"""Reading ``/proc/<pid>/stat`` (and ``status``): the one place that knows their layout.

The second field (the command name) is in parentheses and may itself hold spaces and
parentheses, so the fields are read after the *last* ``)``. Field numbers below are those of
proc(5) minus 3: ``fields[0]`` is the state, ``fields[1]`` the parent pid.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "is_running", "parent_pid", "rss_kib", "start_time", "stat_fields"]

_STATE, _PPID, _UTIME, _STIME, _STARTTIME = 0, 1, 11, 12, 19


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name; None if it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def is_running(pid: int) -> bool:
    """Whether ``pid`` exists and is neither a zombie nor dead (a killed child may not be
    reaped yet, and must not count as running)."""
    fields = stat_fields(pid)
    return fields is not None and fields[_STATE] not in ("Z", "X")


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid``, or None if it cannot be read."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[_PPID])


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" where it cannot be read): with
    the pid, it names a process even after its pid is recycled."""
    fields = stat_fields(pid)
    return "" if fields is None else fields[_STARTTIME]


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU time used so far by ``pids``; None if any cannot be read."""
    ticks = 0
    for pid in pids:
        fields = stat_fields(pid)
        if fields is None:
            return None
        ticks += int(fields[_UTIME]) + int(fields[_STIME])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB (``VmRSS``); 0 if it cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
