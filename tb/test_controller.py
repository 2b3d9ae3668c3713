"""Launcher of tb/controller_bench.py: whole programs on the controller's Verilog with one ``start``, bit-exact with
golden, cycles equal to the controller's cycle model, a corrupt descriptor stopping the program with golden's error.

``program``: the ``program`` bench's chained layers (tb/engine_cases.py), run freely and in step mode. ``network``: a
small quantized network's folder (``golden.images.write_images``) built into the Verilog inline or by
``python -m hdl.top generate --images`` (``$readmemh``): the same output, golden's, either way.
"""

import dataclasses

import numpy as np
import pytest

from engine_cases import bench_config, corrupt_layer, program_bench
from golden import network as gnet
from golden.config import NPUConfig
from golden.controller import program_cycles, run_program
from golden.descriptor import encode_descriptor
from golden.images import read_images, store_activation, write_images
from golden.sequencer import layer_cycles
from golden.stimulus import small_network
from hdl import top
from hdl.controller import Controller
from sim import SIM_BUILD, run_bench, simulator


def expected_counters(descriptors, config):
    return [dict(cycles=layer_cycles(d, config), mac_ops=d.macs) for d in descriptors]


def without_active(counters):
    # active_cycles (steps issued) is the engine's, checked by tb/test_engine.py; here at most the cycles.
    assert all(c["active_cycles"] <= c["cycles"] for c in counters)
    return [{name: c[name] for name in ("cycles", "mac_ops")} for c in counters]


def test_program_runs_with_one_start(bench_report):
    config, seed = bench_config("program"), 2026
    descriptors, images, outputs = program_bench(config, seed)
    outputs = [output.tolist() for output in outputs]
    controller = Controller(config, images=images, descriptors=[encode_descriptor(d, config) for d in descriptors])
    summary = run_bench(controller, name="controller_program", test_module="controller_bench",
                        args=dict(config=config.to_json(), bench="program", seed=seed))
    run, cycles = summary["run"], program_cycles(descriptors, config)
    bench_report(f"controller program, {summary['simulator']}: {len(descriptors)} layers, one start, "
                 f"{sum(a != b for a, b in zip(run['outputs'], outputs))} mismatching layers, {run['cycles']:,} "
                 f"cycles (model {cycles:,})")
    assert run["error"] == 0
    assert run["outputs"] == outputs
    assert without_active(run["counters"]) == expected_counters(descriptors, config)
    assert run["cycles"] == cycles
    assert summary["stepped"] == outputs
    assert summary["step_cycles"] == cycles
    layer, _, check = corrupt_layer(descriptors, config, seed)
    assert summary["error"] == dict(error=1, layer=layer, check=check)


@pytest.mark.parametrize("build", ["inline", "readmemh"])
def test_network_images_run(build, bench_report):
    folder = SIM_BUILD / simulator() / f"controller_network_{build}_images"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    net = small_network(rng, NPUConfig(act_depth=64, weight_depth=64, bias_depth=16))
    write_images(net, folder)
    config, images, descriptors, summary = read_images(folder)
    x = rng.integers(-128, 128, size=(9, 9, 3))
    if build == "inline":
        design, files = Controller(config, images=images,
                                   descriptors=[encode_descriptor(d, config) for d in descriptors]), {}
    else:
        assert top.main(["generate", "--images", str(folder), "-o", str(folder / "top.v"), "--name", "top"]) == 0
        design = (folder / "top.v").read_text()
        assert "$readmemh" in design
        files = {file: (folder / file).read_bytes() for file, _, _ in top.IMAGE_FILES}
    result = run_bench(design, name=f"controller_network_{build}", test_module="controller_bench", files=files,
                       args=dict(config=config.to_json(), bench="network", images=str(folder), input=x.tolist()))
    model = dataclasses.replace(images, activation=images.activation.copy())
    placed = summary["tensors"][gnet.INPUT]
    store_activation(model.activation, x, base=placed["base"], pitch=placed["row_pitch"], config=config)
    expected = run_program(descriptors, model, config)[-1]
    np.testing.assert_array_equal(expected.reshape(-1), gnet.run(net, x[None])[0])
    bench_report(f"controller network ({build}), {result['simulator']}: {len(descriptors)} layers, output "
                 f"{'equal to' if result['output'] == expected.tolist() else 'DIFFERENT from'} golden, "
                 f"{result['cycles']:,} cycles")
    assert result["error"] == 0
    assert result["output"] == expected.tolist()
    assert without_active(result["counters"]) == expected_counters(descriptors, config)
    assert result["cycles"] == program_cycles(descriptors, config)
