"""Shared pytest plumbing: oracle tests record what they compared, and the terminal summary reports it."""

import pytest

_ORACLE_COUNTS = pytest.StashKey[dict]()


@pytest.fixture
def oracle_counts(request):
    """``record(label, layers=, elements=, mismatches=)``: add one comparison's counts to the run's summary."""
    counts = request.config.stash.setdefault(_ORACLE_COUNTS, {})

    def record(label, *, layers, elements, mismatches):
        total = counts.setdefault(label, [0, 0, 0])
        for i, value in enumerate((layers, elements, mismatches)):
            total[i] += int(value)

    return record


def pytest_terminal_summary(terminalreporter, config):
    counts = config.stash.get(_ORACLE_COUNTS, {})
    if not counts:
        return
    terminalreporter.section("oracle comparisons")
    for label, (layers, elements, mismatches) in counts.items():
        terminalreporter.write_line(f"{label}: {layers} layers, {elements} elements, {mismatches} mismatching")
