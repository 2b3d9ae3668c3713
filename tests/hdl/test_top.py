"""``python -m hdl.top generate``: Verilog that Icarus compiles, and one-line errors with exit code 2."""

import shutil
import subprocess
import sys

import pytest


def generate(*args, cwd):
    return subprocess.run([sys.executable, "-m", "hdl.top", "generate", *args], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (apt install iverilog) is not installed")
def test_generated_verilog_compiles(tmp_path):
    result = generate("-o", str(tmp_path / "npu.v"), "--lanes", "4", "--act-depth", "64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "module npu(" in (tmp_path / "npu.v").read_text()
    compiled = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "npu.vvp"), str(tmp_path / "npu.v")],
                              capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr


@pytest.mark.parametrize("args, message", [
    (["--lanes", "0"], "lanes must be an integer in [1, 256], not 0"),
    (["--lanes", "3"], "lanes must be a power of two, not 3"),
    (["--lanes", "1"], "the engine needs at least 2 lanes, not 1"),
    (["--act-depth", "1"], "act_depth must be an integer in [2, 1048576], not 1"),
    (["--shift-bits", "0"], "shift_bits must be an integer in [1, 5], not 0"),
    (["--acc-bits", "24"], "acc_bits must be an integer 32, not 24"),
    (["--lanes", "many"], "argument --lanes: invalid int value: 'many'"),
])
def test_bad_parameters_give_one_line_and_exit_2(tmp_path, args, message):
    result = generate("-o", str(tmp_path / "npu.v"), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not list(tmp_path.iterdir())


def test_missing_output_directory(tmp_path):
    result = generate("-o", str(tmp_path / "nowhere" / "npu.v"), cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr
