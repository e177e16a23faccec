"""Loaded by every Python child of tests/hostile/harness.py (this folder leads its PYTHONPATH).

It caps the child's address space (MVIDEO_CHILD_ADDRESS_SPACE bytes) and, at exit, writes the child's own peak
resident memory (VmHWM of /proc/self/status, in KiB) to MVIDEO_CHILD_PEAK_FILE. A parent cannot measure this
itself: a forked child's rusage counts the parent's pages it held until exec.
"""

import atexit
import os
import resource


def _write_peak(path: str) -> None:
    try:
        with open("/proc/self/status") as status:
            peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
        with open(path, "w") as out:
            out.write(peak)
    except (OSError, StopIteration):
        pass


if os.environ.get("MVIDEO_CHILD_ADDRESS_SPACE"):
    _limit = int(os.environ["MVIDEO_CHILD_ADDRESS_SPACE"])
    resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))
if os.environ.get("MVIDEO_CHILD_PEAK_FILE"):
    atexit.register(_write_peak, os.environ["MVIDEO_CHILD_PEAK_FILE"])
