"""Collects the benches' one-line summaries and prints them after pytest's own (visible with ``-q`` too)."""

import pytest

_LINES = []


@pytest.fixture
def bench_report():
    """Call with a line (vectors, mismatches, speed) to have it printed in the session's closing summary."""
    return _LINES.append


def pytest_terminal_summary(terminalreporter):
    if _LINES:
        terminalreporter.section("RTL benches")
        for line in _LINES:
            terminalreporter.write_line(line)
