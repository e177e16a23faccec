"""The benches' timing helper: warm-up, interleaving and statistics on a fake clock; targets; child CPU; memory."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest

from bench.timing import (
    THREAD,
    Timing,
    busy_neighbour,
    check,
    finish,
    measure,
    parse_target,
    ratio,
    reset_peak_rss,
    rss_mib,
    run_child,
)


class FakeClock:
    """A clock that moves only when a variant runs: each call of a variant advances it by that variant's next cost."""

    def __init__(self, costs: dict[str, list[float]]):
        self.now, self.costs, self.log = 0.0, {k: list(v) for k, v in costs.items()}, []

    def __call__(self) -> float:
        return self.now

    def variant(self, name: str):
        def run():
            self.log.append(name)
            self.now += self.costs[name].pop(0)

        return run


def test_measure_warms_up_each_variant_then_interleaves_and_drops_the_warmup():
    clock = FakeClock({"a": [50.0, 5.0, 1.0, 3.0], "b": [70.0, 2.0, 4.0, 6.0]})
    runs = measure({"a": clock.variant("a"), "b": clock.variant("b")}, repeats=3, warmup=1, clock=clock)
    assert clock.log == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert runs["a"].samples == (5.0, 1.0, 3.0) and runs["b"].samples == (2.0, 4.0, 6.0)


def test_timing_min_and_median():
    timing = Timing((5.0, 1.0, 3.0, 100.0))
    assert timing.min == 1.0 and timing.median == 4.0
    assert timing.figures("step") == {"step_min_ms": 1000.0, "step_median_ms": 4000.0}


def test_ratio_of_minima_and_median_of_paired_repetitions():
    r = ratio(Timing((4.0, 9.0, 6.0)), Timing((1.0, 3.0, 4.0)))
    assert r.of_min == 4.0 and r.of_median == 3.0  # paired ratios 4, 3, 1.5
    assert r.figures("x") == {"x": 3.0, "x_of_min": 4.0}


def test_a_load_spike_in_one_repetition_leaves_both_ratios_unchanged():
    quiet = FakeClock({"a": [1.2] * 6, "b": [1.0] * 6})
    busy = FakeClock({"a": [1.2, 1.2, 12.0, 1.2, 1.2, 1.2], "b": [1.0, 1.0, 10.0, 1.0, 1.0, 1.0]})
    for clock in (quiet, busy):
        runs = measure({"a": clock.variant("a"), "b": clock.variant("b")}, repeats=5, clock=clock)
        r = ratio(runs["a"], runs["b"])
        assert r.of_min == pytest.approx(1.2) and r.of_median == pytest.approx(1.2)
    assert runs["a"].median == pytest.approx(1.2) and max(runs["a"].samples) == pytest.approx(12.0)


def test_ratio_refuses_timings_of_different_repetitions():
    with pytest.raises(ValueError, match="same repetitions, got 2 and 3"):
        ratio(Timing((1.0, 2.0)), Timing((1.0, 2.0, 3.0)))


@pytest.mark.parametrize(("repeats", "warmup"), [(0, 1), (3, -1)])
def test_measure_refuses_no_repetitions_or_negative_warmup(repeats, warmup):
    with pytest.raises(ValueError, match="repeats >= 1 and warmup >= 0"):
        measure({"a": lambda: None}, repeats=repeats, warmup=warmup)


def test_thread_clock_warns_when_work_runs_on_another_thread(capsys):
    def elsewhere():
        def burn():
            t0 = time.thread_time()
            while time.thread_time() - t0 < 0.05:
                pass

        worker = threading.Thread(target=burn)
        worker.start()
        worker.join()

    runs = measure({"a": elsewhere}, repeats=1, warmup=0, clock=THREAD)
    assert runs["a"].samples[0] < 0.05
    assert "other threads did" in capsys.readouterr().err


def test_targets_parse_and_gate_their_figures():
    assert parse_target("<= 1.25") == ("<=", 1.25) and parse_target(">= 25") == (">=", 25.0)
    figures = {"ratio": 1.2, "fps": 24.0, "nan": float("nan")}
    assert check(figures, {"ratio": "<= 1.25", "fps": ">= 25"}) == {"ratio": True, "fps": False}
    assert check(figures, {"nan": "<= 1"}) == {"nan": False}
    with pytest.raises(ValueError, match="'<op> <number>'"):
        parse_target("1.25")
    with pytest.raises(KeyError, match="'ratoi' gates no figure"):
        check(figures, {"ratoi": "<= 1.25"})


def test_finish_prints_one_json_line_with_the_verdict(capsys):
    assert finish("demo", {"ratio": 1.3}, {"ratio": "<= 1.25"}) is False
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {
        "bench": "demo",
        "figures": {"ratio": 1.3},
        "targets": {"ratio": "<= 1.25"},
        "ok": False,
    }


def test_measure_takes_the_seconds_a_variant_returns_without_a_clock():
    costs = iter([9.0, 2.0, 3.0])
    runs = measure({"child": lambda: next(costs)}, repeats=2, warmup=1, clock=None)
    assert runs["child"].samples == (2.0, 3.0)


def test_run_child_counts_the_childs_cpu_not_its_waiting():
    burn = "import time\nt0 = time.process_time()\nwhile time.process_time() - t0 < 0.3: pass\nprint('done')"
    run = run_child([sys.executable, "-c", burn])
    assert run.cpu_s >= 0.3 and run.stdout.strip() == "done"
    assert run_child([sys.executable, "-c", "import time; time.sleep(0.3)"]).cpu_s < 0.25


def test_run_child_raises_with_the_commands_error():
    with pytest.raises(RuntimeError, match="exited with 3:\nboom"):
        run_child([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])


def test_peak_rss_after_reset_counts_what_ran_after():
    reset_peak_rss()
    before = rss_mib()
    block = bytearray(b"\x01") * (64 * 2**20)
    peak = rss_mib("VmHWM")
    del block
    assert peak - before >= 60


def test_busy_neighbour_runs_while_inside_and_is_gone_after():
    with busy_neighbour() as pid:
        os.kill(pid, 0)  # alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
