"""Fixtures of the quantizer library's tests."""

import numpy as np
import pytest

from tools.quantizer.build import build_network
from tools.quantizer.calibrate import calibrate
from tools.quantizer.frontend import load_graph
from tools.quantizer.pipeline import DEFAULT_MODEL


@pytest.fixture(scope="module")
def builtin_channel_networks():
    """``(graph, images, {bits: network})``: the built-in model, 6 random images (seed 3) as calibration and
    evaluation data, and its per-channel networks at 8 and 4 weight bits."""
    graph = load_graph(DEFAULT_MODEL)
    images = np.random.default_rng(3).uniform(-1, 1, (6,) + tuple(graph.shapes[graph.input])).astype(np.float32)
    ranges = calibrate(graph, images, progress=False)
    return graph, images, {bits: build_network(graph, ranges, method="channel", weight_bits=bits)[0]
                           for bits in (8, 4)}
