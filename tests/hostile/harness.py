"""Run a hostile input in a child process and measure it: exit code, output, peak RSS; assert a clean refusal.

`run_measured` starts the command (argv list, or a Python snippet run with `python -c`), waits for it with
`os.wait4`, whose resource usage is that child's own (ru_maxrss: its peak resident set), and returns a `Run`.
The child gets an address-space cap so that a regression allocates at most that much on a shared machine.
Memory bounds are asserted on peak RSS, never on time.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Virtual address space a child may map: imports of numpy/av/cv2/torch take ~1 GiB; a load the budget should have
# refused fails past this instead of taking the shared machine's memory.
DEFAULT_ADDRESS_SPACE = 8 * 1024**3


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
    """Run `command` (argv, or a str of Python code) in a child; return its exit code, output and peak RSS.

    A CLI is run as `[sys.executable, "-m", "mvideo_core.extract", ...]`; the repository root is the default cwd and
    is on PYTHONPATH. `address_space` caps the child's virtual memory (bytes; None: no cap).
    """
    args = [sys.executable, "-c", command] if isinstance(command, str) else [str(a) for a in command]
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), child_env.get("PYTHONPATH")]))
    child_env.setdefault("OMP_NUM_THREADS", "1")
    child_env.setdefault("TQDM_DISABLE", "1")

    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            args,
            cwd=str(cwd or REPO),
            env=child_env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=limit,
        )
        if stdin is not None:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not the max over all children
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return Run(args, proc.returncode, stdout, stderr, usage.ru_maxrss / 1024)  # ru_maxrss is KiB on Linux


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
