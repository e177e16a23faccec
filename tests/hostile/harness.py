"""Run a hostile input in a child process and measure it: exit code, output, peak RSS; assert a clean refusal.

`run_measured` starts a Python child (argv, or a snippet run with `python -c`) with `child/sitecustomize.py` on its
path, which caps its address space (so a regression fails there instead of taking the shared machine's memory) and
reports its own peak resident set (VmHWM) at exit. The parent's rusage of a forked child would include the parent's
own pages up to the exec, so it is not used. Memory bounds are asserted on peak RSS, never on time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHILD_SITE = Path(__file__).resolve().parent / "child"
# Virtual address space a child may map: imports of numpy/av/cv2/torch take ~1 GiB; a load the budget should have
# refused fails past this instead of taking the shared machine's memory.
DEFAULT_ADDRESS_SPACE = 8 * 1024**3
# (test, peak RSS MB) of every child run, for the summary the conftest prints
MEASURED: list[tuple[str, float]] = []


@dataclass
class Run:
    """What a child process did: exit code, its output and its peak resident memory."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (
            f"exit {self.returncode}, peak RSS {self.peak_rss_mb:.0f} MB\n--- stdout\n{self.stdout[-3000:]}\n"
            f"--- stderr\n{self.stderr[-3000:]}"
        )


def run_measured(
    command: Sequence[str] | str,
    *,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    address_space: int | None = DEFAULT_ADDRESS_SPACE,
    stdin: str | None = None,
) -> Run:
    """Run `command` (a Python argv, or a str of Python code) in a child; return its exit code, output and peak RSS.

    A CLI is run as `python_module("mvideo_core.extract", ...)`; the repository root is the default cwd and is on
    PYTHONPATH. `address_space` caps the child's virtual memory (bytes; None: no cap). `peak_rss_mb` is NaN when
    the child died before it could report (killed by a signal).
    """
    args = [sys.executable, "-c", command] if isinstance(command, str) else [str(a) for a in command]
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        child_env = {**os.environ, **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(CHILD_SITE), str(REPO), child_env.get("PYTHONPATH")])
        )
        child_env.setdefault("OMP_NUM_THREADS", "1")
        child_env.setdefault("TQDM_DISABLE", "1")
        child_env["MVIDEO_CHILD_PEAK_FILE"] = str(peak_file)
        if address_space is not None:
            child_env["MVIDEO_CHILD_ADDRESS_SPACE"] = str(int(address_space))
        proc = subprocess.run(
            args, cwd=str(cwd or REPO), env=child_env, input=stdin, capture_output=True, text=True, errors="replace"
        )
        peak_kib = float(peak_file.read_text()) if peak_file.exists() else float("nan")
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::", 1)[-1]
    MEASURED.append((test, peak_kib / 1024))
    return Run(args, proc.returncode, proc.stdout, proc.stderr, peak_kib / 1024)


def python_module(module: str, *args: object) -> list[str]:
    """argv that runs `python -m module args...`."""
    return [sys.executable, "-m", module, *(str(a) for a in args)]


def assert_clear_error(run: Run, *names: str, code: int | None = None, max_rss_mb: float | None = None) -> None:
    """A clean refusal: non-zero exit (`code` if given), no Traceback, a message naming each of `names`.

    `names` are matched case-insensitively in stdout + stderr; `max_rss_mb` bounds the child's peak RSS.
    """
    assert run.returncode != 0, f"expected a refusal, the command succeeded\n{run}"
    if code is not None:
        assert run.returncode == code, f"expected exit code {code}\n{run}"
    assert run.returncode > 0, f"killed by signal {-run.returncode}, not a refusal\n{run}"
    assert "Traceback" not in run.output, f"a traceback reached the user\n{run}"
    for name in names:
        assert name.lower() in run.output.lower(), f"the message does not name {name!r}\n{run}"
    if max_rss_mb is not None:
        assert run.peak_rss_mb <= max_rss_mb, f"peak RSS {run.peak_rss_mb:.0f} MB over {max_rss_mb} MB\n{run}"


def assert_refused(error: BaseException, *names: str) -> None:
    """An in-process refusal: the message names each of `names` (case-insensitive) and is not a raw library error."""
    message = str(error)
    assert message, f"{type(error).__name__} with an empty message"
    for name in names:
        assert name.lower() in message.lower(), f"{type(error).__name__}: {message!r} does not name {name!r}"
