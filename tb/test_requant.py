"""Launcher of tb/requant_bench.py: the requantizer's Verilog, bit-exact against the golden model.

Every bench runs under the simulator chosen with ``SIM`` (tb/sim.py); the small one-lane case also runs under the
other simulator, so that each run of the suite exercises both Icarus and Verilator.
"""

import pytest

from golden.config import NPUConfig
from hdl.requant import Requantizer
from sim import SIMULATORS, run_bench, simulator


@pytest.mark.parametrize("lanes, settings, beats, other", [
    pytest.param(8, 64, 200, False, id="8-64-200"),
    pytest.param(1, 8, 100, False, id="1-8-100"),
    pytest.param(1, 8, 100, True, id="1-8-100-other_simulator"),
])
def test_requantizer_bit_exact(lanes, settings, beats, other, bench_report):
    sim = simulator()
    if other:
        sim = next(name for name in SIMULATORS if name != sim)
    config = NPUConfig(lanes=lanes)
    summary = run_bench(Requantizer(config), name=f"requant_lanes{lanes}", test_module="requant_bench",
                        args=dict(config=config.to_json(), seed=2026 + lanes, settings=settings, beats=beats),
                        sim=sim)
    bench_report(f"requantizer, {lanes} lanes, {sim}: {summary['vectors']:,} vectors over {settings} settings, "
                 f"{summary['mismatches']} mismatches, {summary['vectors'] / summary['seconds']:,.0f} vectors/s "
                 f"({summary['cycles'] / summary['seconds']:,.0f} cycles/s)")
    assert summary["mismatches"] == 0
    assert summary["vectors"] == settings * beats * lanes
