"""``python -m hdl.top generate``: Verilog that Icarus compiles, ``--images`` memories loaded by ``$readmemh``, and
one-line errors with exit code 2 (nothing written)."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from golden.config import NPUConfig
from golden.images import write_images
from golden.stimulus import small_network
from golden.descriptor import encode_descriptor
from hdl.controller import Controller
from hdl.top import IMAGE_FILES, load_with_readmemh, to_verilog


def generate(*args, cwd):
    return subprocess.run([sys.executable, "-m", "hdl.top", "generate", *args], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (apt install iverilog) is not installed")
def test_generated_verilog_compiles(tmp_path):
    result = generate("-o", str(tmp_path / "npu.v"), "--lanes", "4", "--act-depth", "64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "module npu(" in (tmp_path / "npu.v").read_text()
    # 4 lanes: 16 MACs, 4 requantizer and 2 ADD-unit multipliers per lane, and the sequencer's descriptor products.
    dsps = int(re.search(r"estimated for ECP5 \(before synthesis\): (\d+) MULT18X18D, \d+ DP16KD, [\d,]+ FF, "
                         r"~[\d,]+ LUT4", result.stdout)[1])
    assert 16 + 4 * 4 + 4 * 2 < dsps < 16 + 4 * 4 + 4 * 2 + 10
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


@pytest.fixture
def quantized(tmp_path):
    """A quantizer output folder (golden.images.write_images) of a 5-layer network."""
    folder = tmp_path / "quantized"
    folder.mkdir()
    write_images(small_network(np.random.default_rng(5), NPUConfig(act_depth=64, weight_depth=64, bias_depth=16)),
                 folder)
    return folder


def test_images_are_loaded_with_readmemh(tmp_path, quantized):
    out = tmp_path / "out"
    out.mkdir()
    result = generate("--images", str(quantized), "-o", str(out / "npu.v"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (out / "npu.v").read_text()
    assert re.findall(r'\$readmemh\("([a-z.]+)", (\w+)\);', text) == [
        ("descriptors.hex", "mem"), ("bias.hex", "mem"), ("tables.hex", "mem"), ("weights.hex", "mem")]
    assert not re.search(r"^    mem\[\d+\] = ", text, re.MULTILINE)   # no inline init left
    for file, _, _ in IMAGE_FILES:
        assert (out / file).read_bytes() == (quantized / file).read_bytes()
    if shutil.which("iverilog"):
        compiled = subprocess.run(["iverilog", "-g2012", "-o", str(out / "npu.vvp"), str(out / "npu.v")],
                                  capture_output=True, text=True)
        assert compiled.returncode == 0, compiled.stderr


def _break(folder, file, change):
    path = folder / file
    path.write_text(change(path.read_text()))


@pytest.mark.parametrize("args, damage, message", [
    (["--program-depth", "4"], None, "the network's 7 engine layers do not fit program_depth 4"),
    (["--lanes", "4"], None, "memory.json: drop --lanes"),
    ([], ("memory.json", lambda text: "{}"), "is not a quantizer output folder"),
    ([], ("descriptors.hex", lambda text: ""), "the network's 0 engine layers do not fit program_depth 128"),
    ([], ("weights.hex", lambda text: text[1:]), "weights.hex: word"),
    ([], ("bias.hex", lambda text: text.replace("\n", "0\n", 1)), "is not a 288-bit word of 72 hex digits"),
    ([], ("bias.hex", lambda text: text * 20), "bias.hex: 220 words exceed the memory's 16"),
])
def test_bad_images_give_one_line_and_exit_2(tmp_path, quantized, args, damage, message):
    if damage is not None:
        _break(quantized, *damage)
    out = tmp_path / "out"
    out.mkdir()
    result = generate("--images", str(quantized), "-o", str(out / "npu.v"), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not list(out.iterdir())


def test_not_a_folder_gives_one_line(tmp_path):
    result = generate("--images", str(tmp_path / "missing"), "-o", str(tmp_path / "npu.v"), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not a quantizer output" in result.stderr
    assert not list(tmp_path.iterdir())


DECLARED = "module \\t.m (clk);\n  reg [7:0] mem [1:0];\n  initial begin\n    mem[0] = 8'h{};\n  end\nendmodule\n"


def test_readmemh_replaces_a_zero_initial_block_only():
    text, shapes = load_with_readmemh(DECLARED.format("00"), "t", [("m.hex", "m", "mem")])
    assert shapes == {"m.hex": (8, 2)}
    assert '$readmemh("m.hex", mem);' in text and "mem[0] = 8'h00" not in text
    with pytest.raises(ValueError, match=r"^memory 'mem' of t.m not declared once with a zero initial value$"):
        load_with_readmemh(DECLARED.format("01"), "t", [("m.hex", "m", "mem")])
    with pytest.raises(ValueError, match=r"^0 modules t.other in the Verilog, not 1$"):
        load_with_readmemh(DECLARED.format("00"), "t", [("m.hex", "other", "mem")])


MEMORY = re.compile(r"^  reg \[(\d+):0\] (\w+) \[(\d+):0\];\n(  initial begin.*\n)?", re.MULTILINE)


def test_every_memory_starts_at_zero_through_a_loop_whatever_its_depth():
    small, _ = to_verilog(Controller(NPUConfig(lanes=4, act_depth=64)), "npu")
    large, shapes = to_verilog(Controller(NPUConfig(lanes=4, act_depth=60_000, weight_depth=50_000)), "npu",
                               IMAGE_FILES)
    assert abs(len(large) - len(small)) < 5_000      # no line per word (60,000): the depth changes a few widths only
    memories = MEMORY.findall(large)
    assert len(memories) == 9 and all(initial for *_, initial in memories)    # program, counters, 4 banks, 3 images
    assert "i < 60000; i = i + 1) mem[i] = 32'h0;" in _module(large, "npu.engine.activations.bank3")
    assert shapes["weights.hex"] == (128, 50_000) and '$readmemh("weights.hex", mem);' in large


def test_memories_with_contents_keep_amaranths_words():
    config = NPUConfig(lanes=4, act_depth=64)
    text, _ = to_verilog(Controller(config, descriptors=[5, 0, 7]), "npu")
    descriptors, counters = _module(text, "npu.descriptors"), _module(text, "npu.counters")
    width = int(re.search(r"reg \[(\d+):0\] mem ", descriptors)[1]) + 1
    assert f"    mem[0] = {width}'h{5:0{-(-width // 4)}x};" in descriptors
    assert "  initial begin : zero_mem" not in descriptors and "  initial begin : zero_mem" in counters


def _module(text, name):
    """The Verilog of module ``name`` (Yosys' escaped hierarchical name) in ``text``."""
    start = text.index(f"module \\{name} (")
    return text[start:text.index("\nendmodule", start)]
