"""Collects the benches' one-line summaries and coverage tables; prints them after pytest's own (visible with ``-q``)."""

import pytest

_LINES = []
_TABLES = []


@pytest.fixture
def bench_report():
    """Call with a line (vectors, mismatches, speed) to have it printed in the session's closing summary."""
    return _LINES.append


@pytest.fixture
def coverage_report():
    """Call with a title and a functional-coverage table to have it printed in the session's closing summary."""
    return lambda title, table: _TABLES.append((title, table))


def pytest_terminal_summary(terminalreporter):
    if _LINES:
        terminalreporter.section("RTL benches")
        for line in _LINES:
            terminalreporter.write_line(line)
    for title, table in _TABLES:
        terminalreporter.section(f"Functional coverage, regression {title}")
        terminalreporter.write_line(table)
