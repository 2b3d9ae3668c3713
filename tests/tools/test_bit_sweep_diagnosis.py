"""tools/bit_sweep_diagnosis.py: bad input is one line on stderr with exit code 2 (the full run is `slow`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.quantizer import pipeline

ROOT = str(Path(__file__).resolve().parents[2])
SCRIPT = os.path.join(ROOT, "tools", "bit_sweep_diagnosis.py")


def _run(*argv, timeout=120):
    return subprocess.run([sys.executable, SCRIPT, *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "argument --jobs: must be a positive integer, not '0'"),
    (["--channel", "-1"], "argument --channel: must be a non-negative integer, not '-1'"),
    (["--model", "no_such_model.onnx"], "model file 'no_such_model.onnx' does not exist"),
    (["--layer", "pool15"], "--layer 'pool15' is not a weighted layer; those are conv0, depthwise1,"),
    (["--layer", "conv99"], "--layer 'conv99' is not a weighted layer"),
    (["--channel", "16"], "--channel 16 is not below conv0's 16 output channels"),
    (["--layer", "fc17", "--channel", "10"], "--channel 10 is not below fc17's 10 output channels"),
])
def test_bad_input_is_one_line(argv, message):
    if "--model" not in argv and not os.path.exists(pipeline.DEFAULT_MODEL):
        pytest.skip("the built-in model (models/fmnist_mobilenet.onnx) is not in this checkout")
    result = _run(*argv, "--quiet")
    assert result.returncode == 2 and result.stdout == "", argv
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


@pytest.mark.slow
def test_full_run_prints_the_docs_numbers():
    # The numbers docs/quantizer.md quotes ("Why the bit sweep is not monotonic"); about 3 minutes on two cores.
    result = _run("--quiet", timeout=1800)
    assert result.returncode == 0, result.stderr
    for line in ("| layer | 24.0 | 20.7 | 12.0 | 14.5 | 3.5 | 0.6 |",
                 "| channel | 28.9 | 28.2 | 28.1 | 14.3 | 19.8 | 11.0 |",
                 "| channel W4 - channel W5 | +5.99 | [+5.85, +6.14] |",
                 "| channel W6 | W5 | 14.0 |", "| layer | W6 | fc17 | 12.0 | -18.5 | -13.1 | - |",
                 "| channel | +0.6 | +0.2 | +0.0 | -5.7 | +1.1 | +8.9 |"):
        assert line in result.stdout, line
