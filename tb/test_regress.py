"""Launcher of the constrained-random engine regression (tb/regress_bench.py): >= 10**6 RTL outputs, 0 mismatches.

Verilator, whatever ``SIM`` says (Icarus would take hours): one int8 engine build and one two-bit build
(``tb/sim_build/verilator/regress_*``, reused while the design is unchanged). The seed is ``REGRESS_SEED`` (default
:data:`SEED`) and is printed; ``-m slow`` runs :data:`LONG_OUTPUTS` outputs (or ``python tools/regress.py``). The
functional-coverage table is printed in the session's summary, and every bin of ``regress_cases.REQUIRED_BINS`` must
be hit.
"""

import os

import pytest

from regress_cases import REQUIRED_BINS, coverage_table, run_regression

#: Outputs of the default run and of the long one.
OUTPUTS = 1_000_000
LONG_OUTPUTS = 10_000_000
SEED = 2026


def _regress(outputs, bench_report, coverage_report):
    seed = int(os.environ.get("REGRESS_SEED", SEED))
    bench_report(f"regress: seed {seed} (REGRESS_SEED), {outputs:,} outputs asked")
    result = run_regression(outputs, seed, report=bench_report)
    builds = result["builds"].values()
    coverage_report(f"seed {seed}", coverage_table(result["coverage"]))
    failures = [message for build in builds for message in build["failures"]]
    assert not failures, f"{len(failures)} failing layers; first: {failures[0]}"
    assert sum(build["outputs"] for build in builds) >= outputs
    missed = [key for key in REQUIRED_BINS if key not in result["coverage"]]
    assert not missed, f"coverage bins not hit: {missed}"


def test_regression(bench_report, coverage_report):
    _regress(OUTPUTS, bench_report, coverage_report)


@pytest.mark.slow
def test_long_regression(bench_report, coverage_report):
    _regress(LONG_OUTPUTS, bench_report, coverage_report)
