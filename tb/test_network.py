"""Launcher of tb/network_bench.py through ``python tools/run_npu.py``: the built-in reference model, quantized, runs
on the NPU's RTL (Verilator) for a few images, every layer equal to golden, cycles equal to the controller's model.
The ResNet-, MobileNetV3-, Inception- and fire-style fixtures (tests/fixtures/onnx/layers: max pool, fused activation
tables, 6 + 6- and 5 + 12-channel concatenations placed with gaps, a ReLU after a concatenation fused into its
producers; SE gates, SPPF's concatenation and a windowed average pool run on the host) run likewise behind
``-m slow``, and so does MobileNetV2 224x224 when ``../shared`` holds its ONNX model and ImageNet sample (about 15
minutes).

CI-sized: a handful of evaluation images; ``python tools/run_npu.py build/quantized --images 1000`` is the full
run.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from PIL import Image

from golden import network as gnet
from golden.controller import program_cycles
from golden.images import read_images
from network_cases import host_schedule
from tools.quantizer import pipeline

ROOT = Path(__file__).resolve().parents[1]
MOBILENET = ROOT.parent / "shared" / "models" / "mobilenet_v2_imagenet.onnx"
IMAGENET = ROOT.parent / "shared" / "data" / "imagenet-sample"


def quantized_fixture(name, folder):
    """A layer fixture quantized (wess, W8A8) on 24 random images, 12 of them for calibration: its output folder."""
    data = folder / "images"
    data.mkdir()
    rng = np.random.default_rng(1)
    for index in range(24):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(data / f"{index % 3:04d}_{index}.png")
    out = folder / name
    pipeline.run(pipeline.Job(out=str(out), model=str(ROOT / "tests" / "fixtures" / "onnx" / "layers" / f"{name}.onnx"),
                              data=str(data), methods=("wess",), weight_bits=(8,), sweep_bits=(), calib_images=12,
                              progress=False))
    return out


def test_host_layers_run_after_the_engine_layer_before_them(tmp_path):
    out = quantized_fixture("mobilenetv3_style_dynamo_op18", tmp_path)
    summary = json.loads((out / "memory.json").read_text())
    names = [layer["name"] for layer in summary["layers"]]
    schedule = host_schedule(gnet.load(out), summary)
    # the SE gate's Mul after its gate's last conv; the 6 + 6 channel concat (off the lanes) is placed with a gap
    assert {names[index]: [layer.name for layer in layers] for index, layers in schedule.items()} == {
        "conv5": ["mul6"]}
    assert [layer["activation"] for layer in summary["layers"] if layer["activation"]] == ["hard_swish1", "tanh12"]
    assert summary["tensors"]["concat10"]["channels"] == [*range(6), *range(8, 14)]


def run_npu(*args):
    """``python tools/run_npu.py ARGS`` from the repository root: ``(exit status, stdout)``."""
    result = subprocess.run([sys.executable, "tools/run_npu.py", *map(str, args), "--quiet"], cwd=ROOT,
                            capture_output=True, text=True)
    return result.returncode, result.stdout



def test_reference_network_on_the_rtl(reference_folder, tmp_path, bench_report):
    record_path = tmp_path / "r.json"
    status, out = run_npu(reference_folder, "--images", 3, "--json", record_path,
                          "--bundles", tmp_path / "bundles")
    record = json.loads(record_path.read_text())
    config, _, descriptors, _ = read_images(reference_folder)
    assert status == 0 and "| 3 | 0 |" in out and record["mismatching_images"] == 0 and record["images"] == 3
    assert record["rtl_top1"] == record["golden_top1"]
    assert record["cycles_per_image"] == record["model_cycles_per_image"] == program_cycles(descriptors, config)
    assert {d.kind for d in descriptors} == {"conv", "depthwise", "add", "average_pool", "fully_connected"}
    bench_report(f"network reference model: 3 images, 0 mismatching, {record['cycles_per_image']:,} cycles/image, "
                 f"{record['sim_seconds_per_image']:.1f} s/image ({record['simulator']})")


@pytest.mark.slow
def test_a_damaged_bias_word_is_a_mismatch_with_a_bundle(reference_folder, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in reference_folder.iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    lines = (damaged / "bias.hex").read_text().splitlines()
    lines[0] = f"{int(lines[0], 16) ^ (1 << 20):0{len(lines[0])}x}"     # channel 0's bias of the first layer
    (damaged / "bias.hex").write_text("\n".join(lines) + "\n")
    status, out = run_npu(damaged, "--images", 1, "--bundles", tmp_path / "bundles")
    assert status == 1 and "first mismatch" in out and "golden.network.run" in out
    bundle = next((tmp_path / "bundles").iterdir())
    assert np.load(bundle / "input.npy").shape == (28, 28, 1)


def equal_to_golden_and_litert(out, tmp_path):
    """``run_npu OUT --images 4 --litert``'s JSON record, after checking that every layer matched golden, the logits
    LiteRT REF's, and the cycle counters the model."""
    status, text = run_npu(out, "--images", 4, "--litert", "--json", tmp_path / "r.json",
                           "--bundles", tmp_path / "bundles")
    record = json.loads((tmp_path / "r.json").read_text())
    assert status == 0 and record["mismatching_images"] == 0 and record["litert_mismatching_images"] == 0, text
    assert record["cycles_per_image"] == record["model_cycles_per_image"]
    return record


@pytest.mark.slow
@pytest.mark.parametrize("fixture, host", [("resnet_style_legacy_op13", {"mul10"}),
                                           ("mobilenetv3_style_dynamo_op18", {"mul6"}),
                                           # SPPF's concat: its inputs are read by the max pools too
                                           ("inception_style_legacy_op13", {"concat8", "pool13", "relu14"}),
                                           ("fire_style_dynamo_op18", set())])
def test_layer_fixtures_on_the_rtl(fixture, host, tmp_path, bench_report):
    out = quantized_fixture(fixture, tmp_path)
    assert {layer["name"] for layer in json.loads((out / "memory.json").read_text())["host_layers"]} == host
    record = equal_to_golden_and_litert(out, tmp_path)
    bench_report(f"network {fixture}: 4 images, 0 mismatching (LiteRT REF equal too), host layers "
                 f"{', '.join(sorted(host)) or 'none'}, {record['cycles_per_image']:,} cycles/image")


@pytest.mark.slow
@pytest.mark.skipif(not (MOBILENET.is_file() and IMAGENET.is_dir()),
                    reason="../shared/models/mobilenet_v2_imagenet.onnx or ../shared/data/imagenet-sample missing")
def test_mobilenet_v2_on_the_rtl(tmp_path, bench_report):
    out = tmp_path / "q_mnv2"
    subprocess.run([sys.executable, "tools/quantize.py", "--model", MOBILENET, "--data", IMAGENET, "--methods", "wess",
                    "--calib-images", "100", "--eval-images", "4", "--sweep-bits", "none", "--act-depth", "65536",
                    "--weight-depth", "65536", "--bias-depth", "4096", "--out", out, "--quiet"], cwd=ROOT, check=True)
    record = equal_to_golden_and_litert(out, tmp_path)
    bench_report(f"network MobileNetV2 224x224: 4 images, 0 mismatching (LiteRT REF equal too), "
                 f"{record['cycles_per_image']:,} cycles/image, {record['sim_seconds_per_image']:.1f} s/image "
                 f"({record['sim_cpu_seconds_per_image']:.1f} s CPU)")
