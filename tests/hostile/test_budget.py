"""The shared budget (mvideo_core.budget) and the harness that measures children: they must be able to fail."""

from __future__ import annotations

import argparse
import math

import pytest
from harness import assert_clear_error, run_measured

from mvideo_core.budget import (
    DEFAULT_MAX_BYTES,
    Budget,
    BudgetError,
    add_budget_arguments,
    budget_from_args,
    default_budget,
    format_bytes,
    use_budget,
)


def test_harness_measures_the_childs_own_peak_rss():
    small = run_measured("import numpy as np; a = np.ones(10 * 2**20, np.uint8)")
    big = run_measured("import numpy as np; a = np.ones(300 * 2**20, np.uint8)")
    assert small.returncode == big.returncode == 0, (small, big)
    assert big.peak_rss_mb - small.peak_rss_mb > 250, (small.peak_rss_mb, big.peak_rss_mb)


def test_harness_catches_a_traceback_and_a_success():
    crashed = run_measured("raise ValueError('boom')")
    with pytest.raises(AssertionError, match="traceback"):
        assert_clear_error(crashed, "boom")
    with pytest.raises(AssertionError, match="succeeded"):
        assert_clear_error(run_measured("print('fine')"))
    clean = run_measured("import sys; sys.exit('error: --fps must be finite')")
    assert_clear_error(clean, "--fps", code=1)


def test_harness_address_space_cap_stops_a_runaway_allocation():
    run = run_measured("import numpy as np; a = np.ones(12 * 2**30, np.uint8)")
    assert run.returncode != 0 and "MemoryError" in run.stderr, run
    assert run.peak_rss_mb < 1000, run


def test_check_returns_bytes_within_the_budget():
    assert Budget().check("x", frames=10, height=48, width=64, count=2) == 2 * 10 * 48 * 64
    assert Budget().check("x", frames=10, height=48, width=64, itemsize=3) == 10 * 48 * 64 * 3


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "declared, names",
    [
        ({"frames": 300, "height": 3000, "width": 3333}, ["masks.json", "2.79 GiB", "1 GiB", "--max-memory-gb"]),
        ({"frames": 5000, "height": 2, "width": 2}, ["masks.json", "5000 frames", "1000 frames", "--max-frames"]),
        ({"frames": 1, "height": 9000, "width": 9000}, ["9000x9000", "81000000", "--max-pixels"]),
    ],
    ids=["bytes", "frames", "pixels"],
)
def test_check_refuses_past_each_limit_naming_size_and_limit(declared, names, refused):
    budget = Budget(max_frames=1000, max_pixels=8192 * 8192, max_bytes=2**30)
    with pytest.raises(BudgetError) as info:
        budget.check("masks.json", **declared)
    refused(info.value, *names)


@pytest.mark.bad_input
@pytest.mark.parametrize("bad", [-1, 1.5, math.nan, math.inf, "12x", None, True, 10**400])
def test_check_refuses_a_declared_count_that_is_not_a_whole_number(bad, refused):
    with pytest.raises(BudgetError) as info:
        Budget().check("clip.npz", frames=bad, height=4, width=4)
    refused(info.value, "clip.npz", "frames")


def test_check_raises_the_callers_error_class():
    class MaskError(ValueError):
        pass

    with pytest.raises(MaskError, match="over the limit"):
        Budget(max_frames=2).check("m", frames=3, height=1, width=1, error=MaskError)


@pytest.mark.bad_input
@pytest.mark.parametrize("field", ["max_frames", "max_pixels", "max_bytes"])
@pytest.mark.parametrize("bad", [0, -5, 2.5, "1"])
def test_budget_limits_must_be_whole_positive_numbers(field, bad):
    with pytest.raises(BudgetError, match=field):
        Budget(**{field: bad})


def test_use_budget_sets_and_restores_the_default():
    before = default_budget()
    with use_budget(Budget(max_frames=7)):
        assert default_budget().max_frames == 7
    assert default_budget() == before


def test_format_bytes():
    assert format_bytes(1900) == "1.86 KiB"
    assert format_bytes(9.09 * 1024**4) == "9.09 TiB"
    assert format_bytes(12) == "12 B"


def test_flags_build_the_budget():
    parser = argparse.ArgumentParser()
    add_budget_arguments(parser)
    budget = budget_from_args(
        parser.parse_args(["--max-frames", "10", "--max-pixels", "64x48", "--max-memory-gb", "0.5"])
    )
    assert budget == Budget(max_frames=10, max_pixels=64 * 48, max_bytes=2**29)
    assert budget_from_args(parser.parse_args([])).max_bytes == DEFAULT_MAX_BYTES


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--max-frames", "0"], "--max-frames"),
        (["--max-frames", "nan"], "--max-frames"),
        (["--max-frames", "1e400"], "--max-frames"),
        (["--max-pixels", "10x"], "--max-pixels"),
        (["--max-pixels", "-3"], "--max-pixels"),
        (["--max-memory-gb", "inf"], "--max-memory-gb"),
        (["--max-memory-gb", "0"], "--max-memory-gb"),
        (["--max-memory-gb", "lots"], "--max-memory-gb"),
    ],
)
def test_bad_budget_flags_are_refused_by_argparse_naming_the_flag(argv, flag):
    code = f"""
import argparse
from mvideo_core.budget import add_budget_arguments
p = argparse.ArgumentParser(prog="cli")
add_budget_arguments(p)
p.parse_args({argv!r})
"""
    assert_clear_error(run_measured(code), flag, code=2)


def test_studio_budget_flags_set_the_default_every_upload_is_checked_against(monkeypatch):
    import app.cli
    from mvideo_core.budget import Budget, default_budget, set_default_budget

    seen = {}
    monkeypatch.setattr("app.engines.build_engines", lambda args: seen.setdefault("budget", default_budget()))
    monkeypatch.setattr("app.studio.build_studio", lambda engines: (_ for _ in ()).throw(SystemExit(0)))
    previous = default_budget()
    try:
        with pytest.raises(SystemExit):
            app.cli.main(["--max-memory-gb", "0.5", "--max-frames", "100"])
        assert seen["budget"] == Budget(max_frames=100, max_bytes=2**29)
    finally:
        set_default_budget(previous)
