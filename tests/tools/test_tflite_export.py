"""tools/tflite_export.py: a .tflite model that LiteRT runs as the golden network, and one-line errors."""

import os
import re

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter",
                    reason="ai-edge-litert (LiteRT) is not importable; install it with pip install -e '.[dev]'")

from golden import network as gnet
from tools.quantizer.litert import run_reference
from tools.tflite_export import main


def test_litert_export_command_writes_a_model_litert_runs(quantized_reference, tmp_path, capsys):
    from ai_edge_litert.interpreter import Interpreter

    networks, x = quantized_reference
    gnet.save(networks["wess"], tmp_path)
    np.save(tmp_path / "x.npy", x[:8])
    model = tmp_path / "m.tflite"
    assert main([str(tmp_path), "-o", str(model), "--batch", "8", "--bench", "--input", str(tmp_path / "x.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {model}: ") and lines[0].endswith("batch 8")
    assert re.fullmatch(r"LiteRT BUILTIN_REF vs golden: 8 images, 18 layers, \d+ elements compared, 0 mismatching; "
                        r"quantization of \d+ tensors checked, 0 problems; golden .* ms/image\), LiteRT REF .* ms/image\), export .* ms", lines[1]), lines[1]

    interpreter = Interpreter(model_path=str(model))                  # the default (optimised) resolver loads it too
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[:8])
    interpreter.invoke()
    assert interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).shape == (8, 10)
    (reference_output,) = run_reference(model.read_bytes(), [x[:8]])
    np.testing.assert_array_equal(reference_output, gnet.run(networks["wess"], x[:8]))


@pytest.mark.parametrize("args, message", [
    ([], "nothing to do: give -o FILE.tflite and/or --bench"),
    (["-o", "{tmp}/m.tflite", "--batch", "0"], "--batch must be a positive integer"),
    (["-o", "{tmp}/no/m.tflite"], "the folder of --output"),
    (["--bench", "--input", "{tmp}/missing.npy"], "cannot read"),
])
def test_litert_export_command_errors(quantized_reference, tmp_path, capsys, args, message):
    gnet.save(quantized_reference[0]["wess"], tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), *(a.format(tmp=tmp_path) for a in args)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == before
