"""tools/two_bit_table.py: its tables against the quantizer's results, the weight-memory sizes, bad input."""

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tools import quantize, two_bit_table
from tools.quantizer import pipeline
from tools.quantizer.frontend import Conv, FullyConnected, load_graph

ROOT = str(Path(__file__).resolve().parents[2])


def test_tables_from_a_quantizer_run(tmp_path):
    # The tool's quantizer job on the tiny model of the CLI tests (plus its image folder and a short split).
    from tests.tools.test_quantize import _images, _model
    model, data = _model(tmp_path / "tiny.onnx"), _images(tmp_path / "images")
    out = tmp_path / "out"
    job = two_bit_table.quantize_job(str(model), str(out), ["layer", "wess+bc"], jobs=1, progress=False)
    results = pipeline.run(dataclasses.replace(job, data=str(data), calib_images=5))["results"]
    assert results == json.loads((out / "results.json").read_text())["results"]
    # The tools/quantize.py command line the job records runs the same job.
    argv = shlex.split(job.command)
    assert argv[:2] == ["python", "tools/quantize.py"] and argv[argv.index("--out") + 1] == str(out)
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert quantize.main(argv[2:] + ["--data", str(data), "--calib-images", "5"]) == 0
    untimed = lambda rows: [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in rows]  # noqa: E731
    assert untimed(json.loads((tmp_path / "again" / "results.json").read_text())["results"]) == untimed(results)
    table = two_bit_table.accuracy_table(results, ["layer", "wess+bc"]).splitlines()
    assert table[0] == "| weights | layer | wess+bc |" and len(table) == 2 + 1 + len(two_bit_table.QUANTIZER_ROWS)
    by_key = {(r["method"], r["weight_bits"], r["weight_quantizer"], r["first_last_bits"]): r for r in results}
    for line, (label, bits, quantizer, first_last) in zip(table[3:], two_bit_table.QUANTIZER_ROWS):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == label
        for cell, method in zip(cells[1:], ("layer", "wess+bc")):
            r = by_key[(method, bits, quantizer, first_last)]
            assert cell == f"{r['top1']:.2f} / {r['logit_sqnr_db']:.1f}"
    sqnr = two_bit_table.weight_sqnr_table(results, ["layer", "wess+bc"]).splitlines()
    assert sqnr[0] == ("| layer | layer W8 | layer UQ | layer SPTQ | layer MSPTQ | wess+bc W8 | wess+bc UQ | "
                       "wess+bc SPTQ | wess+bc MSPTQ |")
    first = [cell.strip() for cell in sqnr[2].strip("|").split("|")]
    assert first[0] == "conv0" and first[3] == f"{by_key[('layer', 2, 'sptq', None)]['weight_sqnr_db']['conv0']:.2f}"
    mean = [cell.strip() for cell in sqnr[-1].strip("|").split("|")]
    values = list(by_key[("wess+bc", 2, "msptq", None)]["weight_sqnr_db"].values())
    assert mean[0] == "mean" and mean[-1] == f"{np.mean(values):.2f}"
    # A +bc method beside its plain one: its weights (and weight SQNR) are the plain one's, shown once.
    doubled = results + [dict(r, method="layer+bc") for r in results if r["method"] == "layer"]
    assert two_bit_table.weight_sqnr_table(doubled, ["layer", "layer+bc"]) == \
        two_bit_table.weight_sqnr_table(doubled, ["layer"])
    assert "layer+bc" in two_bit_table.weight_sqnr_table(doubled, ["layer+bc"])


def _words(node, lanes=8):
    # docs/memory.md section 2, from the layer shapes: conv/fc ceil(Cout/L)*KH*KW*ceil(Cin/L), depthwise
    # ceil(C/L**2)*KH*KW; a fully connected layer after a pooled 1x1 map has KH = KW = 1.
    ceil = lambda a, b: -(-a // b)                                                     # noqa: E731
    if isinstance(node, FullyConnected):
        return ceil(node.weights.shape[0], lanes) * ceil(node.weights.shape[1], lanes)
    cout, cin, kh, kw = node.weights.shape
    if node.depthwise:
        return ceil(cout, lanes * lanes) * kh * kw
    return ceil(cout, lanes) * kh * kw * ceil(cin, lanes)


@pytest.mark.skipif(not os.path.exists(pipeline.DEFAULT_MODEL), reason="the reference model is not in this checkout")
def test_weight_memory_of_the_reference_model():
    graph = load_graph(pipeline.DEFAULT_MODEL)
    nodes = [n for n in graph.nodes if isinstance(n, (Conv, FullyConnected))]
    words = [_words(n) for n in nodes]
    entries = dict(two_bit_table.weight_memory(calibration_images=4))
    w8, w2, ends = entries["W8 (int8)"], entries["W2 (MSPTQ codes)"], entries["W2, first/last W8"]
    # Two-bit layers: a layer's code words start on a word boundary, four to a word.
    quarters = [-(-count // 4) for count in words]
    assert w8["words_needed"]["weights"] == sum(words)
    assert w8["weight_memory_bits"] == {"stored": sum(words) * 512, "int8_layers": sum(words) * 512,
                                        "two_bit_layers": 0, "all_int8": sum(words) * 512}
    assert w2["words_needed"]["weights"] == sum(quarters)
    assert w2["weight_memory_bits"] == {"stored": sum(quarters) * 512, "int8_layers": 0,
                                        "two_bit_layers": sum(quarters) * 512, "all_int8": sum(words) * 512}
    ends_words = words[0] + words[-1]
    middle = sum(quarters[1:-1])
    assert ends["words_needed"]["weights"] == ends_words + middle
    assert ends["weight_memory_bits"] == {"stored": (ends_words + middle) * 512, "int8_layers": ends_words * 512,
                                          "two_bit_layers": middle * 512, "all_int8": sum(words) * 512}
    assert w8["weights"] == sum(n.weights.size for n in nodes) == w2["two_bit_weights"]


def test_memory_only_command_and_bad_input(tmp_path):
    script = os.path.join(ROOT, "tools", "two_bit_table.py")
    for argv, message in ((["--methods", "wess,foo"], "--methods must be distinct weight methods"),
                          (["--methods", "wess,wess"], "--methods must be distinct weight methods"),
                          (["--fashion-eval-images", "0"], "--fashion-eval-images must be a positive integer, not 0"),
                          (["--out", __file__], "exists and is not a folder")):
        result = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and result.stdout == "", argv
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    if os.path.exists(pipeline.DEFAULT_MODEL):
        result = subprocess.run([sys.executable, script, "--memory-only"], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0 and "| W2 (MSPTQ codes) | 0 | 152 | 152 | 9,728 | 8,848 |" in result.stdout
