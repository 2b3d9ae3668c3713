"""Launcher of tb/engine_bench.py: every layer kind on the engine's Verilog, bit-exact with golden.

One build per bench (all its layers share the memory images); each layer's cycles must equal the golden cycle model
and its MAC count the layer's. The ``utilization`` bench checks the targets (>= 90 % regular convs, >= 75 %
depthwise, channel counts multiples of the lanes) and that a layer of >= 100,000 MACs simulates in under a minute.
"""

import pytest

from engine_cases import bench_config, make_bench, two_bit_bench
from golden.sequencer import layer_cycles
from hdl.engine import Engine
from sim import run_bench

UTILIZATION_TARGET = {"conv": 0.90, "depthwise": 0.75}


@pytest.mark.parametrize("bench", ["conv", "depthwise", "fully_connected", "average_pool", "add", "max_pool",
                                   "table", "utilization", "two_bit"])
def test_engine_bit_exact(bench, bench_report):
    config = bench_config(bench)
    seed = 2026
    # two_bit: int8 layers and two-bit ones (code words four to a weight word, decoded in front of the MAC array)
    cases, images = two_bit_bench(config, seed) if bench == "two_bit" else make_bench(bench, config, seed)
    engine = Engine(config, images=images)
    summary = run_bench(engine, name=f"engine_{bench}", test_module="engine_bench",
                        args=dict(config=config.to_json(), bench=bench, seed=seed))
    layers = summary["layers"]
    assert len(layers) == len(cases)
    for case, layer in zip(cases, layers):
        utilization = layer["mac_ops"] / (config.macs * layer["cycles"])
        bench_report(f"engine {layer['name']}, {summary['simulator']}: {layer['mismatches']} mismatches in "
                     f"{layer['outputs']:,} outputs, {layer['macs']:,} MACs in {layer['cycles']:,} cycles, "
                     f"utilization {utilization:.1%}, {layer['cycles'] / layer['seconds']:,.0f} cycles/s")
    for case, layer in zip(cases, layers):
        assert layer["mismatches"] == 0, layer["name"]
        assert layer["cycles"] == layer_cycles(case.descriptor, config), layer["name"]
        assert layer["mac_ops"] == case.descriptor.macs, layer["name"]
        if bench == "utilization":
            assert layer["mac_ops"] / (config.macs * layer["cycles"]) >= UTILIZATION_TARGET[layer["kind"]]
