"""Hostile-input suite: each test item marked `bad_input` is one bad input; the summary counts those tried and refused.

Helpers (import them: `from harness import run_measured, assert_clear_error, ...`, or use the fixtures below):
`run_measured` runs a CLI / Python snippet in a child and returns exit code, output and peak RSS; `assert_clear_error`
checks a clean refusal (non-zero exit, no Traceback, message names X, optional RSS bound); `assert_refused` checks
an in-process error's message.
"""

from __future__ import annotations

import pytest
from harness import MEASURED, assert_clear_error, assert_refused, run_measured

_tally = {"tried": 0, "clean": 0, "failed": [], "loaded": set()}


@pytest.fixture
def measured():
    """`run_measured`: run a command / Python snippet in a child, get exit code, output and peak RSS."""
    return run_measured


@pytest.fixture
def clear_error():
    """`assert_clear_error(run, *names, code=None, max_rss_mb=None)`."""
    return assert_clear_error


@pytest.fixture
def refused():
    """`assert_refused(error, *names)` for in-process refusals."""
    return assert_refused


@pytest.fixture
def outcome(request):
    """`outcome("loaded")`: this hostile input is handled by loading it (a thin video, bytes nothing reads), not by
    a refusal; the summary counts such inputs apart."""

    def record(kind: str) -> None:
        assert kind == "loaded", kind
        _tally["loaded"].add(request.node.nodeid)

    return record


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bad_input: the test feeds one bad input and asserts a clean refusal (counted)")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each hostile input once: passed = refused (or handled) cleanly, anything else = not."""
    if "bad_input" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            return
        _tally["tried"] += 1
        if report.passed:
            _tally["clean"] += 1
        else:
            _tally["failed"].append(report.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    if MEASURED and terminalreporter.config.getoption("verbose") > 0:
        terminalreporter.write_line("peak RSS of the hostile children (MB):")
        for test, peak in MEASURED:
            terminalreporter.write_line(f"  {peak:7.0f}  {test}")
    if _tally["tried"]:
        loaded = len(_tally["loaded"] - set(_tally["failed"]))
        terminalreporter.write_line(
            f"hostile inputs: {_tally['tried']} tried, {_tally['clean']} handled cleanly "
            f"({_tally['clean'] - loaded} refused with a clear error, {loaded} loaded correctly)"
            + (f", {len(_tally['failed'])} not" if _tally["failed"] else "")
        )
