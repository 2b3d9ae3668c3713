"""golden/layouts.py, descriptor.py, hexfile.py, images.py, engine.py and pool.py's pooling reciprocal: the memories."""

import dataclasses

import numpy as np
import pytest

from golden import network as gnet
from golden.config import NPUConfig
from golden.descriptor import (check_descriptor, decode_descriptor, descriptor_fields, encode_descriptor,
                               layer_descriptor)
from golden.engine import run_layer
from golden.hexfile import read_hex, write_hex
from golden.images import MemoryImages, load_activation, read_images, store_activation, write_images
from golden.layouts import activation_location, pack_words, row_pitch, unpack_words
from golden.pool import GAP_WEIGHT, MAX_POOL_COUNT, average_pool_params, rounding_divide
from golden.requant import requantize
from golden.stimulus import random_layers

CONFIG = NPUConfig(act_depth=512, weight_depth=256, bias_depth=32)


@pytest.mark.parametrize("shape", [(3, 5, 8), (2, 9, 13), (4, 16, 3), (1, 1, 40)])
def test_activation_layout_round_trip_and_bijection(shape):
    rng = np.random.default_rng(sum(shape))
    image = MemoryImages.empty(CONFIG).activation
    x = rng.integers(-128, 128, size=shape)
    pitch = row_pitch(shape[1], shape[2], CONFIG) + 2
    assert store_activation(image, x, base=7, config=CONFIG, pitch=pitch) == pitch
    np.testing.assert_array_equal(load_activation(image, shape, base=7, config=CONFIG, pitch=pitch), x)
    groups = -(-shape[2] // CONFIG.lanes)
    y, xx, g = np.meshgrid(*(np.arange(n) for n in (shape[0], shape[1], groups)), indexing="ij")
    bank, address = activation_location(y, xx, g, base=7, pitch=pitch, width=shape[1], config=CONFIG)
    assert len(set(zip(bank.ravel(), address.ravel()))) == bank.size
    assert address.min() >= 7 and address.max() < 7 + shape[0] * pitch
    missing = image.copy()
    missing[bank, address] = 0
    assert not missing.any()          # nothing written outside the tensor's words


@pytest.mark.parametrize("width, groups", [(8, 1), (11, 3), (16, 12), (7, 18), (33, 2)])
def test_banks_are_conflict_free_for_the_depthwise_reads(width, groups):
    lanes = CONFIG.lanes
    for g in range(groups):
        for x0 in range(-2, width):
            banks, _ = activation_location(0, x0 + np.arange(lanes), g, base=0, pitch=0, width=width, config=CONFIG)
            assert len(set(banks.tolist())) == lanes      # stride 1: lanes pixels of one group
            if g + 1 < groups:
                i = np.arange(lanes // 2)
                b0, _ = activation_location(0, x0 + 2 * i, g, base=0, pitch=0, width=width, config=CONFIG)
                b1, _ = activation_location(0, x0 + 2 * i, g + 1, base=0, pitch=0, width=width, config=CONFIG)
                assert len(set(b0.tolist()) | set(b1.tolist())) == lanes   # stride 2: two groups


def test_pack_and_hex_round_trip(tmp_path):
    values = np.array([[-128, 127, 0, -1], [5, -6, 7, -8]])
    words = pack_words(values, 8)
    assert words[0] == 0xFF_00_7F_80
    np.testing.assert_array_equal(unpack_words(words, 8, 4), values)
    write_hex(tmp_path / "a.hex", words, 32)
    assert (tmp_path / "a.hex").read_text().splitlines() == ["ff007f80", "f807fa05"]
    assert read_hex(tmp_path / "a.hex") == words


def test_descriptor_round_trip_and_field_widths():
    descriptor = layer_descriptor("depthwise", (9, 13, 24), 24, config=CONFIG, kernel=(3, 3), stride=(2, 2),
                                  padding=(0, 1, 0, 1), in_base=3, out_base=200, weight_base=17, bias_base=4,
                                  input_zero_point=-128, multiplier=(1 << 31) - 1, shift=-32, output_zero_point=127,
                                  qmin=-5, qmax=100)
    value = encode_descriptor(descriptor, CONFIG)
    assert value < 1 << sum(width for _, width, _ in descriptor_fields(CONFIG))
    assert decode_descriptor(value, CONFIG) == descriptor
    # A pad row or column the window never reaches is implied away: same output, minimal padding.
    assert descriptor.padding == (0, 0, 0, 0) and descriptor.out_shape == (4, 6, 24)


@pytest.mark.parametrize("change, message", [
    (dict(out_base=10), "overlap"),
    (dict(in_row_pitch=1), "in_row_pitch 1 is below 2 words, the size of one row of 7 x 16"),
    (dict(out_base=500), "exceeds act_depth 512"),
    (dict(stride_width=3), r"stride_width must be an integer in \[1, 2\], not 3"),
    (dict(out_width=9), "out_width 9 does not follow"),
    (dict(pad_top=4), r"pad_top must be an integer in \[0, 3\], not 4"),
    (dict(kind="pool"), "kind must be one of"),
    (dict(weight_base=250), "exceed weight_depth 256"),
    (dict(multiplier=5), "multiplier must be 0 or in"),
    (dict(qmin=10, qmax=9), "qmin 10 exceeds qmax 9"),
])
def test_bad_descriptors_are_refused(change, message):
    good = layer_descriptor("conv", (6, 7, 16), 24, config=CONFIG, kernel=(3, 3), padding=(1, 1, 1, 1),
                            in_base=0, out_base=100)
    with pytest.raises(ValueError, match=message):
        check_descriptor(dataclasses.replace(good, **change), CONFIG)


def test_average_pool_params_are_exact_over_every_window_sum():
    for count in [*range(1, 300), 3136, 12544, MAX_POOL_COUNT]:
        multiplier, shift = average_pool_params(count)
        assert 1 << 30 <= multiplier < 1 << 31 and -32 <= shift <= 0
        total = np.arange(-128 * count, 127 * count + 1, dtype=np.int64)
        got = requantize(GAP_WEIGHT * total, multiplier, shift, 0, 0, -128, 127)
        np.testing.assert_array_equal(got, np.clip(rounding_divide(total, count), -128, 127), err_msg=str(count))
    for bad in (0, MAX_POOL_COUNT + 1, 2.0):
        with pytest.raises(ValueError, match="count must be an integer"):
            average_pool_params(bad)


#: ``golden.stimulus`` specs, placed one after another in one set of images.
RUN_LAYERS = [
    ("conv", "conv", (5, 6, 10), 9, (3, 3), (2, 1), (1, 1, 1, 1), "plain"),
    ("depthwise", "depthwise", (6, 7, 70), 70, (3, 3), (2, 2), (1, 1, 1, 1), "plain"),
    ("fully_connected", "fully_connected", (2, 3, 5), 4, (2, 3), (1, 1), (0, 0, 0, 0), "plain"),
    ("average_pool", "average_pool", (4, 4, 12), 12, (4, 4), (1, 1), (0, 0, 0, 0), "plain"),
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


def small_network(rng, config):
    """conv 3x3 -> depthwise 3x3 stride 2 -> residual-free 1x1 conv -> global pool -> flatten -> fully connected."""
    def weighted(cls, name, source, weights, channels, **extra):
        return cls(name=name, input=source, output=name, weights=weights, bias=rng.integers(-500, 500, size=channels),
                   multiplier=int(rng.integers(1 << 30, 1 << 31)), shift=-int(rng.integers(6, 10)),
                   channel_shift=rng.integers(0, 16, size=channels), weight_scale=np.ones(channels), **extra)
    layers = (
        weighted(gnet.Conv2D, "c0", gnet.INPUT, rng.integers(-127, 128, size=(12, 3, 3, 3)), 12,
                 stride=(1, 1), padding=(1, 1, 1, 1)),
        weighted(gnet.DepthwiseConv2D, "d1", "c0", rng.integers(-127, 128, size=(3, 3, 12)), 12,
                 stride=(2, 2), padding=(0, 1, 0, 1)),
        weighted(gnet.Conv2D, "c2", "d1", rng.integers(-127, 128, size=(20, 1, 1, 12)), 20),
        gnet.AveragePool(name="p3", input="c2", output="p3"),
        gnet.Flatten(name="f4", input="p3", output="f4"),
        weighted(gnet.FullyConnected, "fc5", "f4", rng.integers(-127, 128, size=(10, 20)), 10),
    )
    shapes = {gnet.INPUT: (9, 9, 3), "c0": (9, 9, 12), "d1": (5, 5, 12), "c2": (5, 5, 20), "p3": (1, 1, 20),
              "f4": (20,), "fc5": (10,)}
    tensors = {name: gnet.Tensor(shape=shape, scale=0.1, zero_point=0 if name in ("c2", "p3", "f4") else
                                 int(rng.integers(-20, 20))) for name, shape in shapes.items()}
    tensors["p3"] = tensors["f4"] = tensors["c2"]
    tensors = {name: dataclasses.replace(t, shape=shapes[name]) for name, t in tensors.items()}
    return gnet.Network(layers=layers, tensors=tensors, output="fc5", config=config)


def test_network_images_run_layer_after_layer_as_the_network(tmp_path):
    rng = np.random.default_rng(5)
    config = NPUConfig(act_depth=64, weight_depth=64, bias_depth=16)
    net = small_network(rng, config)
    summary = write_images(net, tmp_path)
    assert summary["fits"] and not summary["host_layers"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bias.hex", "descriptors.hex", "memory.json", "weights.hex"]
    read_config, images, descriptors, _ = read_images(tmp_path)
    assert [d.kind for d in descriptors] == ["conv", "depthwise", "conv", "average_pool", "fully_connected"]

    x = rng.integers(-128, 128, size=(9, 9, 3))
    placed = summary["tensors"][gnet.INPUT]
    store_activation(images.activation, x, base=placed["base"], pitch=placed["row_pitch"], config=read_config)
    for descriptor in descriptors:          # the engine's whole job: one descriptor after another
        output, _ = run_layer(descriptor, images, read_config)
    np.testing.assert_array_equal(output.reshape(-1), gnet.run(net, x[None])[0])


def test_network_images_report_host_layers_and_sizes(tmp_path):
    rng = np.random.default_rng(6)
    net = small_network(rng, NPUConfig(act_depth=16, weight_depth=8, bias_depth=16))
    summary = write_images(net, tmp_path)
    assert not summary["fits"]
    assert summary["words_needed"]["weights"] > 8
    with pytest.raises(ValueError, match="does not exist"):
        write_images(net, tmp_path / "missing")
