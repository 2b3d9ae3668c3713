"""Launcher of tb/network_bench.py through ``python tools/run_npu.py``: the built-in reference model, quantized, runs
on the NPU's RTL (Verilator) for a few images, every layer equal to golden, cycles equal to the controller's model.

CI-sized: a handful of evaluation images; ``python tools/run_npu.py build/quantized --images 1000`` is the full
run.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from golden.controller import program_cycles
from golden.images import read_images

ROOT = Path(__file__).resolve().parents[1]


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
