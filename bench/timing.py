"""One timing helper for every bench: warm-up, interleaved repetitions, one thread's CPU time, min and median.

A bench times its variants side by side with `measure({"base": f, "mvideo": g}, repeats)`: every variant runs once
to warm up, then the variants run in turn (A B A B ...) so a change of load hits all of them alike. The default
clock is `time.thread_time`, the CPU time of the calling thread: a busy neighbour delays the work but does not add
to it, so figures and verdicts hold on a shared machine. Wall time (`WALL`) is for figures where waiting is the
point (a user waiting on a click). Nothing pins cores. Each bench ends with `finish(...)`: one JSON line
`{"bench", "figures", "targets", "ok"}` whose `targets` name the figures they gate (`{"figure": "<= 1.25"}`).

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a bench runs as `python bench/<name>.py`
    from bench import timing
    timing.one_thread()  # first, before numpy / torch / cv2 are imported (E402 is off for bench/)
    runs = timing.measure({"base": base_step, "mvideo": mvideo_step}, repeats=5)
    figures = {**runs["base"].figures("base_step"), **timing.ratio(runs["mvideo"], runs["base"]).figures("step_ratio")}
    timing.finish("generation", figures, {"step_ratio": "<= 1.25"})

`python bench/<name>.py --busy` runs a bench beside a process burning one core: the verdict must not change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import operator
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

THREAD = time.thread_time  # CPU time of the calling thread: ratios and CPU-bound figures
WALL = time.perf_counter  # only where waiting is the point
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


def one_thread() -> None:
    """Keep the measured work on the calling thread, so `THREAD` sees all of it.

    Call it before numpy / torch / cv2 are imported (BLAS reads its thread count once, at import); pools of libraries
    already imported are limited too. Subprocesses inherit the environment.
    """
    for var in THREAD_ENV:
        os.environ[var] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(1)


@dataclass(frozen=True)
class Timing:
    """The repetitions of one variant, in seconds, in the order they ran (warm-up runs excluded)."""

    samples: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def figures(self, name: str, scale: float = 1e3, unit: str = "ms", digits: int = 2) -> dict[str, float]:
        """`{name}_min_{unit}` and `{name}_median_{unit}` (seconds times `scale`), for a bench's JSON figures."""
        return {
            f"{name}_min_{unit}": round(self.min * scale, digits),
            f"{name}_median_{unit}": round(self.median * scale, digits),
        }


@dataclass(frozen=True)
class Ratio:
    """`a / b` of two interleaved variants: of their minima, and the median of the per-repetition ratios."""

    of_min: float
    of_median: float

    def figures(self, name: str, digits: int = 4) -> dict[str, float]:
        """`{name}`: the median of the paired ratios, the figure a target gates (each pair ran back to back, under
        the same load, so a load change cancels; minima may come from different moments); `{name}_of_min` beside."""
        return {name: round(self.of_median, digits), f"{name}_of_min": round(self.of_min, digits)}


def ratio(a: Timing, b: Timing) -> Ratio:
    """`a` over `b`. Repetition i of both ran back to back (same load), so their ratios pair up."""
    if len(a.samples) != len(b.samples):
        raise ValueError(f"ratio needs timings of the same repetitions, got {len(a.samples)} and {len(b.samples)}")
    paired = [x / y for x, y in zip(a.samples, b.samples, strict=True)]
    return Ratio(of_min=a.min / b.min, of_median=statistics.median(paired))


def measure(
    variants: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    clock: Callable[[], float] | None = THREAD,
) -> dict[str, Timing]:
    """Time each variant `repeats` times, interleaved (A B A B ...), after `warmup` untimed rounds of each.

    `clock=None`: each variant returns its own seconds (e.g. a child's CPU time from `run_child`).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measure needs repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):  # first-call costs (allocator, lazy init, caches) are not part of any figure
        for fn in variants.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    cpu = [0.0, 0.0]  # this thread's and the whole process's CPU time over the timed runs
    for _ in range(repeats):
        for name, fn in variants.items():
            p0 = time.process_time()
            if clock is None:
                samples[name].append(float(fn()))
            else:
                t0 = clock()
                fn()
                samples[name].append(clock() - t0)
            cpu[1] += time.process_time() - p0
    if clock is THREAD:
        cpu[0] = sum(map(sum, samples.values()))
        if cpu[1] > 1.1 * cpu[0] + 0.01:
            print(
                f"timing: other threads did {cpu[1] - cpu[0]:.2f} of {cpu[1]:.2f} CPU s that the thread clock does not"
                " see; call bench.timing.one_thread() before importing numpy / torch / cv2",
                file=sys.stderr,
            )
    return {name: Timing(tuple(values)) for name, values in samples.items()}


@dataclass(frozen=True)
class ChildRun:
    """What the kernel counted for one finished child process: CPU seconds (user + system, all threads) and its stdout.

    No peak RSS: the kernel's count for a child starts at its parent's RSS, so a child reports its own (`rss_mib`).
    """

    cpu_s: float
    stdout: str


def run_child(cmd: list[str], **popen_kwargs) -> ChildRun:
    """Run a command to its end and return its own CPU time and stdout (raises with its stderr if it fails).

    For work in another process (the `ffmpeg` CLI, a fresh interpreter): the kernel counts that child alone, so a
    busy neighbour does not change the figures.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, **popen_kwargs)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd[:3])} ... exited with {proc.returncode}:\n{message}")
    return ChildRun(usage.ru_utime + usage.ru_stime, out.decode(errors="replace"))


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident memory (`VmRSS`) or its peak since the last `reset_peak_rss()` (`VmHWM`), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}; memory figures need Linux")


def reset_peak_rss() -> None:
    """Set the peak (`VmHWM`) to the current RSS, so a later peak counts only what runs after (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


@contextlib.contextmanager
def busy_neighbour() -> Iterator[int]:
    """A second process burning one core for the duration (the load every verdict must survive); yields its pid."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def neighbour(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """`busy_neighbour()` when the bench runs with `--busy`, else nothing."""
    return busy_neighbour() if args.busy else contextlib.nullcontext()


def parser(doc: str) -> argparse.ArgumentParser:
    """A bench's command line: `--quick` (warmed up, fewer repetitions, < 1 min) and `--busy`."""
    p = argparse.ArgumentParser(description=doc.strip().split("\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="fewer repetitions and smaller runs, still warmed up (< 1 min)"
    )
    p.add_argument("--busy", action="store_true", help="run beside a process burning one core (the verdict must hold)")
    return p


def parse_target(target: str) -> tuple[str, float]:
    """'<= 1.25' -> ('<=', 1.25)."""
    op, _, value = target.strip().partition(" ")
    if op not in COMPARISONS or not value:
        raise ValueError(f"a target reads '<op> <number>' with op one of {list(COMPARISONS)}, got {target!r}")
    return op, float(value)


def check(figures: Mapping[str, object], targets: Mapping[str, str]) -> dict[str, bool]:
    """Each target's verdict; a target must name a figure (a typo must not pass silently)."""
    verdicts = {}
    for name, target in targets.items():
        if name not in figures:
            raise KeyError(f"target {name!r} gates no figure; figures are {sorted(figures)}")
        op, bound = parse_target(target)
        value = float(figures[name])
        verdicts[name] = not math.isnan(value) and COMPARISONS[op](value, bound)
    return verdicts


def finish(bench: str, figures: Mapping[str, object], targets: Mapping[str, str]) -> bool:
    """Print each target's verdict and the bench's one JSON line; returns `ok` (every target holds)."""
    verdicts = check(figures, targets)
    for name, holds in verdicts.items():
        print(f"target {name} {targets[name]}: {figures[name]} {'holds' if holds else 'MISSED'}")
    ok = all(verdicts.values())
    print(json.dumps({"bench": bench, "figures": dict(figures), "targets": dict(targets), "ok": ok}))
    return ok
