"""Launcher of tb/requant_bench.py: the requantizer's Verilog, bit-exact against the golden model under Icarus."""

import pytest

from golden.config import NPUConfig
from hdl.requant import Requantizer
from sim import run_bench


@pytest.mark.parametrize("lanes, settings, beats", [(8, 64, 200), (1, 8, 100)])
def test_requantizer_bit_exact(lanes, settings, beats, bench_report):
    config = NPUConfig(lanes=lanes)
    summary = run_bench(Requantizer(config), name=f"requant_lanes{lanes}", test_module="requant_bench",
                        args=dict(config=config.to_json(), seed=2026 + lanes, settings=settings, beats=beats))
    bench_report(f"requantizer, {lanes} lanes: {summary['vectors']:,} vectors over {settings} settings, "
                 f"{summary['mismatches']} mismatches, {summary['vectors'] / summary['seconds']:,.0f} vectors/s "
                 f"({summary['cycles'] / summary['seconds']:,.0f} cycles/s)")
    assert summary["mismatches"] == 0
    assert summary["vectors"] == settings * beats * lanes
