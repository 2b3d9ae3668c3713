"""tools/quantizer/evaluate.py: the split of a layer's output error into bias, per-image and spatial parts (against
errors built from known parts), and layer_errors against layer_sqnr on the built-in model."""

import numpy as np
import pytest

from tools.quantizer.build import layer_names
from tools.quantizer.evaluate import error_components, layer_errors, layer_sqnr
from tools.quantizer.weights import sqnr_db


def _parts(shape, seed=0):
    """A reference and three error parts of an (images, height, width, channels) output, each of zero mean over
    the axes the next finer part averages (so they are orthogonal by construction)."""
    rng = np.random.default_rng(seed)
    n, h, w, c = shape
    reference = rng.standard_normal(shape)
    bias = rng.standard_normal(c) * 0.1
    image = rng.standard_normal((n, c)) * 0.05
    image -= image.mean(axis=0)
    spatial = rng.standard_normal(shape) * 0.02
    spatial -= spatial.mean(axis=(1, 2), keepdims=True)
    return reference, bias, image[:, None, None, :], spatial


def _absent(value):
    # A part that is zero up to float round-off (the subtraction of two float64 outputs).
    return value is None or value < -250


def _db(part, reference):
    return 10 * np.log10(np.sum(np.broadcast_to(part, reference.shape) ** 2) / np.sum(reference ** 2))


def test_each_part_is_found_alone_and_together():
    reference, bias, image, spatial = _parts((6, 3, 4, 5))
    together = error_components(reference, reference + bias + image + spatial)
    assert together["bias_db"] == pytest.approx(_db(bias, reference), abs=1e-9)
    assert together["image_db"] == pytest.approx(_db(image, reference), abs=1e-9)
    assert together["spatial_db"] == pytest.approx(_db(spatial, reference), abs=1e-9)
    assert together["sqnr_db"] == pytest.approx(sqnr_db(reference, reference + bias + image + spatial), abs=1e-12)
    # The parts' powers add up to the error's.
    total = sum(10 ** (together[name] / 10) for name in ("bias_db", "image_db", "spatial_db"))
    assert -10 * np.log10(total) == pytest.approx(together["sqnr_db"], abs=1e-9)
    only_bias = error_components(reference, reference + bias)
    assert _absent(only_bias["image_db"]) and _absent(only_bias["spatial_db"])
    assert only_bias["bias_db"] == pytest.approx(only_bias["sqnr_db"] * -1, abs=1e-9)
    only_spatial = error_components(reference, reference + spatial)
    assert _absent(only_spatial["bias_db"]) and _absent(only_spatial["image_db"])


def test_removing_each_channels_mean_error_removes_the_bias_part():
    reference, bias, image, spatial = _parts((4, 2, 2, 3), seed=1)
    approximation = reference + 3 * bias + image + spatial
    error = approximation - reference
    corrected = error_components(reference, approximation - error.mean(axis=(0, 1, 2)))
    assert _absent(corrected["bias_db"])
    assert corrected["image_db"] == pytest.approx(error_components(reference, approximation)["image_db"], abs=1e-9)


def test_vectors_have_no_spatial_part_and_exact_outputs_no_error():
    reference, bias, image, _ = _parts((5, 1, 1, 3), seed=2)
    vectors = error_components(reference[:, 0, 0], (reference + bias + image)[:, 0, 0])
    assert vectors["spatial_db"] is None                  # exactly: one position per image
    assert vectors["bias_db"] == pytest.approx(_db(bias, reference), abs=1e-9)
    assert vectors["image_db"] == pytest.approx(_db(image, reference), abs=1e-9)
    assert error_components(reference, reference) == {"sqnr_db": None, "bias_db": None, "image_db": None,
                                                      "spatial_db": None}
    with pytest.raises(ValueError, match="channels"):
        error_components(np.ones(3), np.zeros(3))


def test_layer_errors_agree_with_layer_sqnr_on_the_builtin_model(builtin_channel_networks):
    graph, images, networks = builtin_channel_networks
    names = layer_names(graph)
    errors = layer_errors(graph, networks, images, names)
    sqnr = layer_sqnr(graph, networks, images, names)
    assert set(errors) == {8, 4} and set(errors[8]) == set(names.values())
    for bits in networks:
        for layer, parts in errors[bits].items():
            assert parts["sqnr_db"] == pytest.approx(sqnr[bits]["sqnr_db"][layer], abs=1e-9)
    assert errors[4]["fc17"]["spatial_db"] is None and errors[4]["conv14"]["spatial_db"] is not None
    assert errors[4]["fc17"]["sqnr_db"] < errors[8]["fc17"]["sqnr_db"]
