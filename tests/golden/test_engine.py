"""golden/engine.py: the engine's golden model, fed through the memory images, equals the golden ops."""

import numpy as np
import pytest

from golden.config import NPUConfig
from golden.engine import run_layer
from golden.images import load_activation
from golden.stimulus import random_layers

CONFIG = NPUConfig(act_depth=512, weight_depth=256, bias_depth=32)


#: ``golden.stimulus`` specs, placed one after another in one set of images.
RUN_LAYERS = [
    ("conv", "conv", (5, 6, 10), 9, (3, 3), (2, 1), (1, 1, 1, 1), "plain"),
    ("depthwise", "depthwise", (6, 7, 70), 70, (3, 3), (2, 2), (1, 1, 1, 1), "plain"),
    ("fully_connected", "fully_connected", (2, 3, 5), 4, (2, 3), (1, 1), (0, 0, 0, 0), "plain"),
    ("average_pool", "average_pool", (4, 4, 12), 12, (4, 4), (1, 1), (0, 0, 0, 0), "plain"),
    ("add", "add", (3, 5, 11), 11, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
]


@pytest.mark.parametrize("index", range(len(RUN_LAYERS)), ids=[spec[0] for spec in RUN_LAYERS])
def test_run_layer_reads_the_layouts_back(index):
    # The engine's golden model, fed through the memory images, equals the golden ops on the original arrays.
    cases, images = random_layers(RUN_LAYERS, CONFIG, 11)
    case = cases[index]
    d = case.descriptor
    output, acc = run_layer(d, images, CONFIG)
    np.testing.assert_array_equal(output, case.expected)
    np.testing.assert_array_equal(acc, case.acc)
    np.testing.assert_array_equal(load_activation(images.activation, d.out_shape, base=d.out_base, config=CONFIG),
                                  case.expected)
