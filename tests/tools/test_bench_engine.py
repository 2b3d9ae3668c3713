"""tools/bench_engine.py: MobileNetV2's layer table, ONNX import of engine layers, the command line."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from golden.config import NPUConfig
from golden.descriptor import layer_descriptor
from golden.sequencer import layer_cycles
from tools.bench_engine import mobilenet_v2_layers, model_layers

REPO = Path(__file__).resolve().parents[2]
SHARED_MOBILENET = REPO.parent / "shared" / "models" / "mobilenet_v2_imagenet.onnx"
BIG = NPUConfig(act_depth=1 << 20, weight_depth=1 << 20, bias_depth=1 << 20)


def totals(layers):
    macs = cycles = 0
    for _, kind, shape, cout, kernel, stride, padding in layers:
        descriptor = layer_descriptor(kind, shape, cout, config=BIG, kernel=kernel, stride=stride, padding=padding,
                                      in_base=0, out_base=1 << 19)
        macs += descriptor.macs
        cycles += layer_cycles(descriptor, BIG)
    return macs, cycles


def test_mobilenet_v2_table():
    layers = mobilenet_v2_layers(224)
    kinds = [kind for _, kind, *_ in layers]
    assert kinds.count("conv") + kinds.count("depthwise") == 52 and kinds.count("depthwise") == 17
    assert kinds.count("add") == 10
    assert layers[-2][2] == (7, 7, 1280) and layers[-1][3] == 1000
    macs, cycles = totals(layers)
    assert macs == 300_836_992            # MobileNetV2 1.0 at 224: the usual "300M MACs"
    assert macs / (BIG.macs * cycles) > 0.9
    adds = totals([layer for layer in layers if layer[1] == "add"])
    assert adds[0] == 0 and adds[1] / cycles < 0.011          # 54,436 cycles, 1.07 % (two words per output word)


@pytest.mark.skipif(not SHARED_MOBILENET.is_file(), reason="the shared MobileNetV2 ONNX model is not present")
def test_onnx_mobilenet_v2_has_the_built_in_layers():
    assert totals(model_layers(SHARED_MOBILENET)) == totals(mobilenet_v2_layers(224))


def test_reference_model_layers():
    layers = model_layers(REPO / "models" / "fmnist_mobilenet.onnx")
    assert {kind for _, kind, *_ in layers} == {"conv", "depthwise", "average_pool", "fully_connected", "add"}


def bench(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "bench_engine.py"), *args], cwd=REPO,
                          capture_output=True, text=True)


def test_command_prints_the_model_table():
    result = bench("--no-sim", "--resolution", "96")
    assert result.returncode == 0, result.stderr
    assert "MobileNetV2 96x96" in result.stdout and "depthwise (17 layers)" in result.stdout
    assert "add (10 layers)" in result.stdout and "cycle share" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--lanes", "3"], "lanes must be a power of two, not 3"),
    (["--lanes", "1"], "the engine needs at least 2 lanes, not 1"),
    (["--resolution", "8"], "resolution must be an integer in [32, 1023], not 8"),
    (["--model", "missing.onnx"], "model file 'missing.onnx' does not exist"),
    (["--seed", "-1"], "seed must be a non-negative integer, not -1"),
])
def test_bad_options_give_one_line_and_exit_2(args, message):
    result = bench("--no-sim", *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog is not installed")
def test_command_runs_every_kind_in_icarus():
    result = bench("--resolution", "64")
    assert result.returncode == 0, result.stderr
    assert "simulated" in result.stdout and "cycles/s" in result.stdout
