"""Fixtures shared by tests/ and tb/."""

import pytest

from tools.quantizer import pipeline


@pytest.fixture(scope="session")
def reference_folder(tmp_path_factory):
    """The built-in reference model quantized (wess, W8A8) on its calibration images and 24 evaluation images: a
    quantizer output folder whose two residual adds run on the engine."""
    out = tmp_path_factory.mktemp("quantized") / "reference"
    pipeline.run(pipeline.Job(out=str(out), methods=("wess",), weight_bits=(8,), sweep_bits=(), eval_images=24,
                              trace_images=4, progress=False))
    return out
