"""golden/images.py: a network's memory images, int8 and two-bit, written, read back and run layer after layer as
the network."""

import dataclasses

import numpy as np
import pytest

from golden import network as gnet
from golden.add import add_params
from golden.config import NPUConfig
from golden.engine import run_layer
from golden.hexfile import read_hex
from golden.images import read_images, read_weight_codes, store_activation, store_weights, write_images
from golden.layouts import decode_code_words

UQ, SPTQ = np.array([-3, -1, 1, 3]), np.array([-4, -1, 1, 4])


def small_network(rng, config):
    """conv 3x3 -> depthwise 3x3 stride 2 -> 1x1 conv, residual add of the depthwise and the 1x1 conv (their own
    scales and zero points) -> 1x1 conv -> global pool -> flatten -> fully connected."""
    def weighted(cls, name, source, weights, channels, k_max=15, **extra):
        return cls(name=name, input=source, output=name, weights=weights, bias=rng.integers(-500, 500, size=channels),
                   multiplier=int(rng.integers(1 << 30, 1 << 31)), shift=-int(rng.integers(6, 10)),
                   channel_shift=rng.integers(0, k_max + 1, size=channels), weight_scale=np.ones(channels), **extra)
    shapes = {gnet.INPUT: (9, 9, 3), "c0": (9, 9, 12), "d1": (5, 5, 12), "e2": (5, 5, 12), "a3": (5, 5, 12),
              "c4": (5, 5, 20), "p5": (1, 1, 20), "f6": (20,), "fc7": (10,)}
    tensors = {name: gnet.Tensor(shape=shape, scale=float(rng.uniform(0.05, 0.2)),
                                 zero_point=int(rng.integers(-20, 20))) for name, shape in shapes.items()}
    tensors["p5"] = dataclasses.replace(tensors["c4"], shape=shapes["p5"], zero_point=0)
    tensors["c4"] = dataclasses.replace(tensors["c4"], zero_point=0)
    tensors["f6"] = dataclasses.replace(tensors["p5"], shape=shapes["f6"])
    t = {name: (tensors[name].scale, tensors[name].zero_point) for name in ("d1", "e2", "a3")}
    layers = (
        weighted(gnet.Conv2D, "c0", gnet.INPUT, rng.integers(-127, 128, size=(12, 3, 3, 3)), 12,
                 stride=(1, 1), padding=(1, 1, 1, 1)),
        weighted(gnet.DepthwiseConv2D, "d1", "c0", rng.integers(-127, 128, size=(3, 3, 12)), 12,
                 stride=(2, 2), padding=(1, 1, 1, 1), k_max=1),      # the add's inputs spread over int8
        weighted(gnet.Conv2D, "e2", "d1", rng.integers(-127, 128, size=(12, 1, 1, 12)), 12, k_max=1),
        gnet.Add(name="a3", inputs=("d1", "e2"), output="a3", params=add_params(*t["d1"], *t["e2"], *t["a3"])),
        weighted(gnet.Conv2D, "c4", "a3", rng.integers(-127, 128, size=(20, 1, 1, 12)), 20),
        gnet.AveragePool(name="p5", input="c4", output="p5"),
        gnet.Flatten(name="f6", input="p5", output="f6"),
        weighted(gnet.FullyConnected, "fc7", "f6", rng.integers(-127, 128, size=(10, 20)), 10),
    )
    return gnet.Network(layers=layers, tensors=tensors, output="fc7", config=config)


def test_network_images_run_layer_after_layer_as_the_network(tmp_path):
    rng = np.random.default_rng(5)
    config = NPUConfig(act_depth=64, weight_depth=64, bias_depth=16)
    net = small_network(rng, config)
    summary = write_images(net, tmp_path)
    assert summary["fits"] and not summary["host_layers"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bias.hex", "descriptors.hex", "memory.json", "weights.hex"]
    read_config, images, descriptors, _ = read_images(tmp_path)
    assert [d.kind for d in descriptors] == ["conv", "depthwise", "conv", "add", "conv", "average_pool",
                                             "fully_connected"]

    x = rng.integers(-128, 128, size=(9, 9, 3))
    placed = summary["tensors"][gnet.INPUT]
    store_activation(images.activation, x, base=placed["base"], pitch=placed["row_pitch"], config=read_config)
    _, trace = gnet.run(net, x[None], keep=True)
    engine_layers = [layer for layer in net.layers if layer.kind != "flatten"]
    for descriptor, layer in zip(descriptors, engine_layers):   # the engine's whole job: one descriptor after another
        output, _ = run_layer(descriptor, images, read_config)
        np.testing.assert_array_equal(output.reshape(-1), trace.tensors[layer.output][0].reshape(-1), layer.name)
    assert len(np.unique(trace.tensors["a3"])) > 20        # the add's outputs spread: a live check of its arithmetic


def test_network_images_report_host_layers_and_sizes(tmp_path):
    rng = np.random.default_rng(6)
    net = small_network(rng, NPUConfig(act_depth=16, weight_depth=8, bias_depth=16))
    summary = write_images(net, tmp_path)
    assert not summary["fits"]
    assert summary["words_needed"]["weights"] > 8
    with pytest.raises(ValueError, match="does not exist"):
        write_images(net, tmp_path / "missing")


def _two_bit_network(rng, config):
    """int8 conv 3x3 (3 -> 12) -> two-bit depthwise 3x3 /2 -> two-bit 1x1 conv (12 -> 10) -> flatten -> two-bit fc."""
    def weighted(cls, name, source, weights, channels, codebook=None, **extra):
        if codebook is not None:
            weights = codebook[rng.integers(0, 4, size=weights)]
        return cls(name=name, input=source, output=name, weights=weights, bias=rng.integers(-500, 500, size=channels),
                   multiplier=int(rng.integers(1 << 30, 1 << 31)), shift=-int(rng.integers(4, 8)),
                   channel_shift=rng.integers(0, 16, size=channels), weight_scale=np.ones(channels),
                   codebook=codebook, **extra)
    layers = (
        weighted(gnet.Conv2D, "c0", gnet.INPUT, rng.integers(-127, 128, size=(12, 3, 3, 3)), 12,
                 padding=(1, 1, 1, 1)),
        weighted(gnet.DepthwiseConv2D, "d1", "c0", (3, 3, 12), 12, SPTQ * 5, stride=(2, 2), padding=(1, 1, 1, 1)),
        weighted(gnet.Conv2D, "c2", "d1", (10, 1, 1, 12), 10, UQ),
        gnet.Flatten(name="f3", input="c2", output="f3"),
        weighted(gnet.FullyConnected, "fc4", "f3", (7, 250), 7, SPTQ),
    )
    shapes = {gnet.INPUT: (9, 9, 3), "c0": (9, 9, 12), "d1": (5, 5, 12), "c2": (5, 5, 10), "f3": (250,),
              "fc4": (7,)}
    tensors = {name: gnet.Tensor(shape=shape, scale=0.1, zero_point=int(rng.integers(-20, 20)))
               for name, shape in shapes.items()}
    tensors["f3"] = dataclasses.replace(tensors["c2"], shape=(250,))
    return gnet.Network(layers=layers, tensors=tensors, output="fc4", config=config)


def test_two_bit_network_images_decode_to_the_int8_image_and_run_as_the_network(tmp_path, codes_of_word):
    rng = np.random.default_rng(9)
    config = NPUConfig(act_depth=64, weight_depth=64, bias_depth=16)
    net = _two_bit_network(rng, config)
    summary = write_images(net, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bias.hex", "codebooks.hex", "descriptors.hex",
                                                          "memory.json", "weight_codes.hex", "weights.hex"]
    lines = (tmp_path / "weight_codes.hex").read_text().splitlines()
    assert all(len(line) == 2 * 8 * 8 // 4 for line in lines)          # 128-bit words: 32 hex digits
    read_config, images, descriptors, _ = read_images(tmp_path)
    code_config, words, entries = read_weight_codes(tmp_path)
    assert code_config == read_config and len(entries) == len(descriptors) == 4
    # Placement: the two-bit layers' words one after another in the code memory, as many as in the int8 memory.
    layers = summary["layers"]
    assert [entry[1] for entry in entries] == [layer["code_base"] for layer in layers] == [0, 0, 9, 13]
    assert entries[0] == (None, 0) and [e[0].tolist() for e in entries[1:]] == [(SPTQ * 5).tolist(), UQ.tolist(),
                                                                               SPTQ.tolist()]
    # Words per layer (docs/memory.md section 2): depthwise 9 taps x ceil(12/64) blocks; 1x1 conv 2 output groups x
    # 2 input groups; fc over the 5x5x10 map 1 output group x 25 taps x 2 input groups.
    sizes = {"depthwise": 9, "conv": 4, "fully_connected": 50}
    assert len(words) == summary["words_needed"]["weight_codes"] == 63
    assert summary["words_needed"]["weights"] == 2 * 9 * 1 + 63            # + the int8 conv: 2 groups x 9 taps x 1
    assert summary["weight_memory_bits"] == {"int8": 81 * 8 * 64, "int8_layers": 18 * 8 * 64, "codes": 63 * 2 * 64,
                                             "codebooks": 3 * 32}

    decoded_images = dataclasses.replace(images, weights=images.weights.copy())
    for descriptor, (codebook, code_base), layer in zip(descriptors, entries, net.layers[:3] + net.layers[4:]):
        if codebook is None:
            continue
        n = sizes[descriptor.kind]
        decoded = decode_code_words(words[code_base:code_base + n], codebook, read_config)
        int8 = images.weights[descriptor.weight_base:descriptor.weight_base + n]
        # Valid elements (where the layer's weights are stored) decode to the int8 image; padding holds code 0.
        weights = layer.weights.reshape(layer.weights.shape[0], 5, 5, 10) if descriptor.kind == "fully_connected" \
            else layer.weights
        mask = np.zeros((n, 8, 8), dtype=np.int8)
        store_weights(mask, descriptor.kind, np.ones_like(weights), base=0, config=read_config)
        valid = mask.astype(bool)
        np.testing.assert_array_equal(decoded[valid], int8[valid])
        np.testing.assert_array_equal(decoded[~valid], codebook[0])
        codes = np.array([codes_of_word(word, 8) for word in words[code_base:code_base + n]]).reshape(n, 8, 8)
        assert not codes[~valid].any()
        decoded_images.weights[descriptor.weight_base:descriptor.weight_base + n] = decoded

    # The engine model on the DECODED weights (padding decoded to codebook[0], never read) = the network.
    x = rng.integers(-128, 128, size=(9, 9, 3))
    placed = summary["tensors"][gnet.INPUT]
    store_activation(decoded_images.activation, x, base=placed["base"], pitch=placed["row_pitch"],
                     config=read_config)
    for descriptor in descriptors:
        output, _ = run_layer(descriptor, decoded_images, read_config)
    np.testing.assert_array_equal(output.reshape(-1), gnet.run(net, x[None])[0])


def test_int8_network_writes_no_code_files(tmp_path):
    rng = np.random.default_rng(3)
    net = _two_bit_network(rng, NPUConfig(act_depth=64, weight_depth=64, bias_depth=16))
    plain = dataclasses.replace(net, layers=tuple(dataclasses.replace(layer, codebook=None)
                                                  if hasattr(layer, "codebook") else layer for layer in net.layers))
    summary = write_images(plain, tmp_path)
    assert "weight_codes.hex" not in summary["files"] and not (tmp_path / "codebooks.hex").exists()
    assert summary["words_needed"]["weight_codes"] == 0
    assert summary["weight_memory_bits"]["int8"] == summary["weight_memory_bits"]["int8_layers"]
    with pytest.raises(FileNotFoundError):
        read_weight_codes(tmp_path)
    assert read_hex(tmp_path / "weights.hex")
