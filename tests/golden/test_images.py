"""golden/images.py: a network's memory images, int8 and mixed int8 / two-bit codes, written, read back (the hex text
read independently) and run layer after layer as the network."""

import dataclasses

import numpy as np
import pytest

from golden import network as gnet
from golden.activation import activation_table, lookup
from golden.add import add_params
from golden.config import NPUConfig
from golden.engine import run_layer
from golden.hexfile import read_hex
from golden.images import (load_activation, load_placed, read_code_words, read_images, store_activation,
                           store_weight_codes, store_weights, write_images)
from golden.stimulus import small_network

UQ, SPTQ = np.array([-3, -1, 1, 3]), np.array([-4, -1, 1, 4])


def test_network_images_run_layer_after_layer_as_the_network(tmp_path):
    rng = np.random.default_rng(5)
    config = NPUConfig(act_depth=64, weight_depth=64, bias_depth=16)
    net = small_network(rng, config)
    summary = write_images(net, tmp_path)
    assert summary["fits"] and not summary["host_layers"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bias.hex", "descriptors.hex", "memory.json", "tables.hex",
                                                            "weights.hex"]
    read_config, images, descriptors, _ = read_images(tmp_path)
    assert [d.kind for d in descriptors] == ["conv", "depthwise", "conv", "add", "conv", "average_pool",
                                             "fully_connected"]
    assert [d.table for d in descriptors] == [1, 0, 0, 0, 0, 0, 0]        # LeakyReLU h0 fused into conv c0
    np.testing.assert_array_equal(images.tables[0], net.layer("h0").table)

    trace = _assert_runs_as_the_network(net, summary, read_config, images, descriptors, rng)
    assert len(np.unique(trace.tensors["a3"])) > 20        # the add's outputs spread: a live check of its arithmetic


def _assert_runs_as_the_network(net, summary, config, images, descriptors, rng):
    # A random input placed in the images, the descriptors run one after another (the engine's whole job) with
    # golden.engine.run_layer: the last output is golden.network.run's.
    x = rng.integers(-128, 128, size=net.tensors[gnet.INPUT].shape)
    placed = summary["tensors"][gnet.INPUT]
    store_activation(images.activation, x, base=placed["base"], pitch=placed["row_pitch"], config=config)
    _, trace = gnet.run(net, x[None], keep=True)
    assert len(descriptors) == len(summary["layers"])
    for descriptor, entry in zip(descriptors, summary["layers"]):   # the engine's whole job: one after another
        output, _ = run_layer(descriptor, images, config)
        tensor = net.layer(entry["activation"] or entry["name"]).output     # a fused activation's output
        np.testing.assert_array_equal(output.reshape(-1), trace.tensors[tensor][0].reshape(-1), entry["name"])
    return trace


def test_network_images_report_host_layers_and_sizes(tmp_path):
    rng = np.random.default_rng(6)
    net = small_network(rng, NPUConfig(act_depth=16, weight_depth=8, bias_depth=16))
    summary = write_images(net, tmp_path)
    assert not summary["fits"]
    assert summary["words_needed"]["weights"] > 8
    with pytest.raises(ValueError, match="does not exist"):
        write_images(net, tmp_path / "missing")


def _mixed_network(rng, config):
    """int8 conv 3x3 (3 -> 12) -> two-bit depthwise 3x3 /2 -> int8 1x1 conv (12 -> 10) -> flatten -> two-bit fc."""
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
        weighted(gnet.DepthwiseConv2D, "d1", "c0", (3, 3, 12), 12, SPTQ * 31, stride=(2, 2), padding=(1, 1, 1, 1)),
        weighted(gnet.Conv2D, "c2", "d1", rng.integers(-127, 128, size=(10, 1, 1, 12)), 10),
        gnet.Flatten(name="f3", input="c2", output="f3"),
        weighted(gnet.FullyConnected, "fc4", "f3", (7, 250), 7, UQ * 42),
    )
    shapes = {gnet.INPUT: (9, 9, 3), "c0": (9, 9, 12), "d1": (5, 5, 12), "c2": (5, 5, 10), "f3": (250,),
              "fc4": (7,)}
    tensors = {name: gnet.Tensor(shape=shape, scale=0.1, zero_point=int(rng.integers(-20, 20)))
               for name, shape in shapes.items()}
    tensors["f3"] = dataclasses.replace(tensors["c2"], shape=(250,))
    return gnet.Network(layers=layers, tensors=tensors, output="fc4", config=config)


def _quarter(line, q, lanes):
    # Quarter q (bits [2 L^2 q, 2 L^2 (q + 1))) of a weights.hex line: hex digits counted from the right.
    digits = lanes * lanes // 2
    return int(line[len(line) - digits * (q + 1):len(line) - digits * q], 16)


def test_mixed_network_images_hold_codes_four_to_a_word_and_run_as_the_network(tmp_path, codes_of_word):
    rng = np.random.default_rng(9)
    config = NPUConfig(act_depth=64, weight_depth=64, bias_depth=16, weight_code_bits=2)
    net = _mixed_network(rng, config)
    summary = write_images(net, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bias.hex", "descriptors.hex", "memory.json", "tables.hex",
                                                            "weights.hex"]
    lines = (tmp_path / "weights.hex").read_text().splitlines()
    assert all(len(line) == 8 * 8 * 8 // 4 for line in lines)          # 512-bit words: 128 hex digits
    read_config, images, descriptors, _ = read_images(tmp_path)
    # Words per layer (docs/memory.md section 2): conv 3x3 2 output groups x 9 taps; depthwise 9 taps x 1 block (3
    # words of 4 code words); 1x1 conv 2 x 2 groups; fc over the 5x5x10 map 25 taps x 2 input groups (13 words). A
    # two-bit layer starts on a word boundary, its weight_base in code words.
    assert [d.weight_format for d in descriptors] == [0, 1, 0, 1]
    assert [d.weight_base for d in descriptors] == [0, 4 * 18, 21, 4 * 25]
    assert [[d.codebook0, d.codebook1, d.codebook2, d.codebook3] for d in descriptors] == [
        [0] * 4, (SPTQ * 31).tolist(), [0] * 4, (UQ * 42).tolist()]
    assert [layer["codebook"] for layer in summary["layers"]] == [None, (SPTQ * 31).tolist(), None,
                                                                 (UQ * 42).tolist()]
    assert summary["words_needed"]["weights"] == len(lines) == 38
    assert summary["weight_memory_bits"] == {"stored": 38 * 512, "int8_layers": 22 * 512, "two_bit_layers": 16 * 512,
                                             "all_int8": 81 * 512}

    for descriptor, layer in zip(descriptors, net.layers[:3] + net.layers[4:]):
        weights = layer.weights.reshape(layer.weights.shape[0], 5, 5, 10) if descriptor.kind == "fully_connected" \
            else layer.weights
        expected = np.zeros((50, 8, 8), dtype=np.int8)
        n = store_weights(expected, descriptor.kind, weights, base=0, config=read_config)
        if not descriptor.weight_format:        # int8 words read back as written
            np.testing.assert_array_equal(images.weights[descriptor.weight_base:descriptor.weight_base + n],
                                          expected[:n])
            continue
        # Code word k of the layer: quarter k mod 4 of line weight_base / 4 + k div 4, read off the hex text.
        codes = np.array([codes_of_word(_quarter(lines[descriptor.weight_base // 4 + k // 4], k % 4, 8), 8)
                          for k in range(n)]).reshape(n, 8, 8)
        valid = np.zeros((n, 8, 8), dtype=np.int8)
        store_weights(valid, descriptor.kind, np.ones_like(weights), base=0, config=read_config)
        valid = valid.astype(bool)
        np.testing.assert_array_equal(layer.codebook[codes][valid], expected[:n][valid])
        assert not codes[~valid].any()                                     # padding: code 0
        np.testing.assert_array_equal([_quarter(lines[descriptor.weight_base // 4 + k // 4], k % 4, 8)
                                       for k in range(n, -(-n // 4) * 4)], 0)   # the last word's spare quarters

    # The engine model on the images as read back (int8 words, code words decoded) = the network.
    _assert_runs_as_the_network(net, summary, read_config, images, descriptors, rng)


def test_an_engine_without_the_decoder_stores_every_layer_as_int8(tmp_path):
    rng = np.random.default_rng(3)
    net = _mixed_network(rng, NPUConfig(act_depth=64, weight_depth=64, bias_depth=16))
    summary = write_images(net, tmp_path)
    read_config, images, descriptors, _ = read_images(tmp_path)
    assert [d.weight_format for d in descriptors] == [0, 0, 0, 0]
    assert [d.weight_base for d in descriptors] == [0, 18, 27, 31]
    assert summary["words_needed"]["weights"] == 81
    assert summary["weight_memory_bits"] == {"stored": 81 * 512, "int8_layers": 81 * 512, "two_bit_layers": 0,
                                             "all_int8": 81 * 512}
    d1 = descriptors[1]
    expected = np.zeros((9, 8, 8), dtype=np.int8)
    store_weights(expected, "depthwise", net.layers[1].weights, base=0, config=read_config)
    np.testing.assert_array_equal(images.weights[d1.weight_base:d1.weight_base + 9], expected)
    _assert_runs_as_the_network(net, summary, read_config, images, descriptors, rng)


def test_code_words_stored_at_any_base_keep_the_other_quarters():
    config = NPUConfig(lanes=2, weight_depth=4, weight_code_bits=2)
    rng = np.random.default_rng(4)
    image = rng.integers(-128, 128, size=(4, 2, 2)).astype(np.int8)
    before = read_code_words(image, 0, 16, config)
    codes = rng.integers(0, 4, size=(3, 1, 1, 2))                          # a 1x1 conv 2 -> 3: 2 code words
    assert store_weight_codes(image, "conv", codes, base=7, config=config) == 2
    after = read_code_words(image, 0, 16, config)
    assert after[:7] == before[:7] and after[9:] == before[9:]
    # Code word 7 is quarter 3 of word 1 (output channels 0, 1), code word 8 quarter 0 of word 2 (channel 2, padding).
    for k, rows in ((7, codes[:2, 0, 0]), (8, np.concatenate([codes[2:, 0, 0], [[0, 0]]]))):
        assert after[k] == sum(int(code) << 2 * i for i, code in enumerate(rows.reshape(-1)))
    with pytest.raises(ValueError, match="2 code words at 15 exceed the 4-word weight memory"):
        store_weight_codes(image, "conv", codes, base=15, config=config)


def _pool_table_network(rng, config):
    """conv 3x3 (3 -> 16) -> max pool 3x3/2 pad 1 -> HardSwish (fused into the pool) -> 1x1 conv (16 -> 8) ->
    LeakyReLU and Sigmoid of the conv's output (host layers: their input is read twice) -> add of the two -> global
    pool."""
    def conv(name, source, weights, channels, **extra):
        return gnet.Conv2D(name=name, input=source, output=name, weights=weights,
                           bias=rng.integers(-500, 500, size=channels), multiplier=int(rng.integers(1 << 30, 1 << 31)),
                           shift=-int(rng.integers(7, 10)), channel_shift=np.zeros(channels, dtype=np.int64),
                           weight_scale=np.ones(channels), **extra)
    q = {name: gnet.Tensor(shape=shape, scale=float(rng.uniform(0.05, 0.2)), zero_point=int(rng.integers(-20, 20)))
         for name, shape in ((gnet.INPUT, (9, 9, 3)), ("c0", (9, 9, 16)), ("h2", (5, 5, 16)), ("c3", (5, 5, 8)),
                             ("l4", (5, 5, 8)), ("a6", (5, 5, 8)))}
    q["m1"] = dataclasses.replace(q["c0"], shape=(5, 5, 16))
    q["s5"] = gnet.Tensor(shape=(5, 5, 8), scale=1 / 256, zero_point=-128)
    q["g7"] = dataclasses.replace(q["a6"], shape=(1, 1, 8), zero_point=0)
    q["a6"] = dataclasses.replace(q["a6"], zero_point=0)

    def table(function, source, output, **extra):
        return activation_table(function, q[source].scale, q[source].zero_point, q[output].scale,
                                q[output].zero_point, **extra)
    layers = (
        conv("c0", gnet.INPUT, rng.integers(-127, 128, size=(16, 3, 3, 3)), 16, padding=(1, 1, 1, 1)),
        gnet.MaxPool(name="m1", input="c0", output="m1", kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1)),
        gnet.Activation(name="h2", input="m1", output="h2", function="hard_swish",
                        table=table("hard_swish", "m1", "h2")),
        conv("c3", "h2", rng.integers(-127, 128, size=(8, 1, 1, 16)), 8),
        gnet.Activation(name="l4", input="c3", output="l4", function="leaky_relu", alpha=0.2,
                        table=table("leaky_relu", "c3", "l4", alpha=0.2)),
        gnet.Activation(name="s5", input="c3", output="s5", function="logistic", table=table("logistic", "c3", "s5")),
        gnet.Add(name="a6", inputs=("l4", "s5"), output="a6",
                 params=add_params(q["l4"].scale, q["l4"].zero_point, q["s5"].scale, q["s5"].zero_point,
                                   q["a6"].scale, q["a6"].zero_point)),
        gnet.AveragePool(name="g7", input="a6", output="g7"),
    )
    return gnet.Network(layers=layers, tensors=q, output="g7", config=config)


def test_max_pool_and_fused_tables_run_as_the_network(tmp_path):
    rng = np.random.default_rng(11)
    net = _pool_table_network(rng, NPUConfig(act_depth=128, weight_depth=64, bias_depth=16))
    summary = write_images(net, tmp_path)
    # An activation whose input another layer reads too stays on the host (the network runner's job).
    assert summary["host_layers"] == [{"name": "l4", "kind": "activation"}, {"name": "s5", "kind": "activation"}]
    assert [(layer["name"], layer["kind"], layer["activation"]) for layer in summary["layers"]] == [
        ("c0", "conv", None), ("m1", "max_pool", "h2"), ("c3", "conv", None), ("a6", "add", None),
        ("g7", "average_pool", None)]
    assert "m1" not in summary["tensors"] and "c3" in summary["tensors"]
    config, images, descriptors, _ = read_images(tmp_path)
    assert [(d.table, d.table_base) for d in descriptors] == [(0, 0), (1, 0), (0, 0), (0, 0), (0, 0)]
    np.testing.assert_array_equal(images.tables[0], net.layer("h2").table)
    assert (tmp_path / "tables.hex").read_text().split()[:2] == [
        f"{v & 0xFF:02x}" for v in net.layer("h2").table[:2]]
    # Engine layers and the host's Sigmoid in network order, each tensor golden.network.run's.
    x = rng.integers(-128, 128, size=(9, 9, 3))
    tensors = summary["tensors"]
    store_activation(images.activation, x, base=tensors[gnet.INPUT]["base"], pitch=tensors[gnet.INPUT]["row_pitch"],
                     config=config)
    _, trace = gnet.run(net, x[None], keep=True)
    outputs = {}
    for descriptor, layer in zip(descriptors, summary["layers"]):
        if layer["name"] == "a6":        # the host's tables run before the add, on the conv's output
            c3 = load_activation(images.activation, (5, 5, 8), base=tensors["c3"]["base"],
                                 pitch=tensors["c3"]["row_pitch"], config=config)
            for name in ("l4", "s5"):
                store_activation(images.activation, lookup(c3, net.layer(name).table), base=tensors[name]["base"],
                                 pitch=tensors[name]["row_pitch"], config=config)
        outputs[layer["activation"] or layer["name"]] = run_layer(descriptor, images, config)[0]
    for name in ("c0", "h2", "c3", "a6", "g7"):
        np.testing.assert_array_equal(outputs[name], trace.tensors[name][0], name)
    assert len(np.unique(outputs["h2"])) > 10 and (outputs["g7"] != 0).any()


def test_chained_activations_fuse_as_one_composed_table(tmp_path):
    """conv -> HardSwish -> LeakyReLU -> Tanh: one engine layer whose table is the three tables composed; the
    engine's output is golden.network.run's Tanh output (a chain is exact: each table maps int8 to int8)."""
    rng = np.random.default_rng(12)
    q = {name: gnet.Tensor(shape=(6, 6, 8), scale=float(rng.uniform(0.02, 0.1)), zero_point=int(rng.integers(-20, 20)))
         for name in ("c0", "h1", "l2", "t3")}
    q[gnet.INPUT] = gnet.Tensor(shape=(6, 6, 3), scale=0.05, zero_point=3)
    q["t3"] = dataclasses.replace(q["t3"], scale=1 / 128, zero_point=0)

    def table(function, source, output, **extra):
        return activation_table(function, q[source].scale, q[source].zero_point, q[output].scale,
                                q[output].zero_point, **extra)
    layers = (
        gnet.Conv2D(name="c0", input=gnet.INPUT, output="c0", weights=rng.integers(-127, 128, size=(8, 3, 3, 3)),
                    bias=rng.integers(-500, 500, size=8), multiplier=int(rng.integers(1 << 30, 1 << 31)), shift=-9,
                    channel_shift=np.zeros(8, dtype=np.int64), weight_scale=np.ones(8), padding=(1, 1, 1, 1)),
        gnet.Activation(name="h1", input="c0", output="h1", function="hard_swish",
                        table=table("hard_swish", "c0", "h1")),
        gnet.Activation(name="l2", input="h1", output="l2", function="leaky_relu", alpha=0.1,
                        table=table("leaky_relu", "h1", "l2", alpha=0.1)),
        gnet.Activation(name="t3", input="l2", output="t3", function="tanh", table=table("tanh", "l2", "t3")),
    )
    net = gnet.Network(layers=layers, tensors=q, output="t3", config=NPUConfig(act_depth=64, weight_depth=32,
                                                                               bias_depth=8))
    summary = write_images(net, tmp_path)
    assert summary["host_layers"] == []
    assert [(layer["name"], layer["activation"], layer["activations"]) for layer in summary["layers"]] == [
        ("c0", "t3", ["h1", "l2", "t3"])]
    assert set(summary["tensors"]) == {gnet.INPUT, "t3"} and summary["words_needed"]["tables"] == 1
    config, images, descriptors, _ = read_images(tmp_path)
    composed = [net.layer("t3").table[net.layer("l2").table[int(v) + 128] + 128] for v in net.layer("h1").table]
    np.testing.assert_array_equal(images.tables[0], composed)
    trace = _assert_runs_as_the_network(net, summary, config, images, descriptors, rng)
    assert len(np.unique(trace.tensors["t3"])) > 10


def _branches(branch_channels, conv):
    """conv 3x3 (3 -> 16) -> 1x1 conv branches (``branch_channels``; LeakyReLU fused into the second), each layer
    ``conv(name, source, cin, cout, kernel=1)``: ``(layers, tensors, the concatenation's inputs, quantization)``."""
    q = gnet.Tensor(shape=(6, 7, 16), scale=0.1, zero_point=-5)
    tensors = {gnet.INPUT: gnet.Tensor(shape=(6, 7, 3), scale=0.05, zero_point=3), "c0": q}
    layers = [conv("c0", gnet.INPUT, 3, 16, kernel=3)]
    inputs = []
    for index, channels in enumerate(branch_channels):
        name = f"b{index}"
        layers.append(conv(name, "c0", 16, channels))
        tensors[name] = dataclasses.replace(q, shape=(6, 7, channels))
        if index == 1:
            layers.append(gnet.Activation(name="r1", input=name, output="r1", function="leaky_relu", alpha=0.1,
                                          table=activation_table("leaky_relu", q.scale, q.zero_point, q.scale,
                                                                 q.zero_point, alpha=0.1)))
            tensors["r1"], name = tensors[name], "r1"
        inputs.append(name)
    return layers, tensors, inputs, q


def _concat_network(rng, config, branch_channels):
    """conv 3x3 (3 -> 16) -> three 1x1 conv branches (``branch_channels``; LeakyReLU fused into the second) ->
    concat -> 1x1 conv -> global pool: a SqueezeNet fire block."""
    def conv(name, source, cin, cout, kernel=1):
        return gnet.Conv2D(name=name, input=source, output=name,
                           weights=rng.integers(-127, 128, size=(cout, kernel, kernel, cin)),
                           bias=rng.integers(-500, 500, size=cout), multiplier=int(rng.integers(1 << 30, 1 << 31)),
                           shift=-int(rng.integers(7, 10)), channel_shift=np.zeros(cout, dtype=np.int64),
                           weight_scale=np.ones(cout), padding=(kernel // 2,) * 4)
    total = sum(branch_channels)
    layers, tensors, inputs, q = _branches(branch_channels, conv)
    layers += [gnet.Concat(name="cat", inputs=tuple(inputs), output="cat"), conv("c4", "cat", total, 8),
               gnet.AveragePool(name="g5", input="c4", output="g5")]
    tensors.update(cat=dataclasses.replace(q, shape=(6, 7, total)), c4=dataclasses.replace(q, shape=(6, 7, 8)),
                   g5=dataclasses.replace(q, shape=(1, 1, 8)))
    return gnet.Network(layers=tuple(layers), tensors=tensors, output="g5", config=config)


def test_concat_by_placement_runs_as_the_network(tmp_path):
    rng = np.random.default_rng(12)
    net = _concat_network(rng, NPUConfig(act_depth=256, weight_depth=64, bias_depth=16), (8, 16, 5))
    summary = write_images(net, tmp_path)
    assert summary["host_layers"] == []
    tensors = summary["tensors"]
    cat = tensors["cat"]
    wg = 1                                                         # ceil(7 / 8) words per channel group and row
    # Slices start at channel groups 0, 1 and 3: bases one word per group on, banks turned alike.
    assert [(tensors[name]["base"] - cat["base"], tensors[name]["skew"], tensors[name]["row_pitch"])
            for name in ("b0", "r1", "b2")] == [(0, 0, 4 * wg), (1, 1, 4 * wg), (3, 3, 4 * wg)]
    assert cat["words"] == 6 * 4 * wg + 3 * wg                       # the last slice's region ends inside it
    config, images, descriptors, _ = read_images(tmp_path)
    assert [d.out_skew for d in descriptors] == [0, 0, 1, 3, 0, 0]
    x = rng.integers(-128, 128, size=(6, 7, 3))
    store_activation(images.activation, x, base=tensors[gnet.INPUT]["base"], config=config)
    _, trace = gnet.run(net, x[None], keep=True)
    for descriptor, layer in zip(descriptors, summary["layers"]):
        output = run_layer(descriptor, images, config)[0]
        name = layer["activation"] or layer["name"]
        np.testing.assert_array_equal(output, trace.tensors[name][0], name)
    whole = load_activation(images.activation, (6, 7, 29), base=cat["base"], pitch=cat["row_pitch"], config=config)
    np.testing.assert_array_equal(whole, trace.tensors["cat"][0])
    assert len(np.unique(trace.tensors["g5"])) > 3


def _fire_network(rng, config, branch_channels, function, tail):
    """conv 3x3 (3 -> 16) -> 1x1 conv branches (``branch_channels``, LeakyReLU fused into the second) -> concat ->
    ``function`` (a table: ``relu``, or ``logistic``, whose value at the gaps' zero point is not its zero point) ->
    depthwise 3x3 -> max pool 3x3/2 -> add of it and a depthwise of it, then ``tail``: ``conv`` (1x1 conv ->
    global pool), ``fc`` (global pool -> flatten -> fully connected), ``pool`` (a global pool as the output),
    ``add`` (an add of it and a 1x1 conv of the max pool, whose output has no gaps: a host layer) or ``host`` (a 2x2
    average pool, a host layer, as the output). Every tensor after the concat has the concat's
    channels; zero points differ and lie away from 0, so that what the gaps hold is not 0 in the next layer's
    zero point and a gap weight that is not 0 shows."""
    def weighted(cls, name, source, weights, channels, **extra):
        return cls(name=name, input=source, output=name, weights=weights, bias=rng.integers(-500, 500, size=channels),
                   multiplier=int(rng.integers(1 << 30, 1 << 31)), shift=-int(rng.integers(7, 10)),
                   channel_shift=rng.integers(0, 3, size=channels), weight_scale=np.ones(channels), **extra)
    total = sum(branch_channels)
    layers, tensors, inputs, q = _branches(branch_channels, lambda name, source, cin, cout, kernel=1: weighted(
        gnet.Conv2D, name, source, rng.integers(-127, 128, size=(cout, kernel, kernel, cin)), cout,
        padding=(kernel // 2,) * 4))
    joined = dataclasses.replace(q, shape=(6, 7, total))
    after = joined if function == "relu" else gnet.Tensor(shape=joined.shape, scale=1 / 256, zero_point=-128)
    small = dataclasses.replace(joined, shape=(3, 4, total), zero_point=7)
    layers += [gnet.Concat(name="cat", inputs=tuple(inputs), output="cat"),
               gnet.Activation(name="relu", input="cat", output="relu", function=function,
                               table=activation_table(function, q.scale, q.zero_point, after.scale,
                                                      after.zero_point)),
               weighted(gnet.DepthwiseConv2D, "d", "relu", rng.integers(-127, 128, size=(3, 3, total)), total,
                        padding=(1, 1, 1, 1)),
               gnet.MaxPool(name="m", input="d", output="m", kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1)),
               weighted(gnet.DepthwiseConv2D, "e", "m", rng.integers(-127, 128, size=(3, 3, total)), total,
                        padding=(1, 1, 1, 1)),
               gnet.Add(name="a", inputs=("m", "e"), output="a", params=add_params(0.1, 7, 0.1, 7, 0.1, 7))]
    tensors.update(cat=joined, relu=after, d=joined, m=small, e=small, a=small)
    if tail == "conv":
        layers += [weighted(gnet.Conv2D, "c", "a", rng.integers(-127, 128, size=(8, 1, 1, total)), 8),
                   gnet.AveragePool(name="g", input="c", output="g")]
        tensors.update(c=dataclasses.replace(small, shape=(3, 4, 8)), g=dataclasses.replace(small, shape=(1, 1, 8)))
        output = "g"
    elif tail == "fc":
        layers += [gnet.AveragePool(name="g", input="a", output="g"), gnet.Flatten(name="f", input="g", output="f"),
                   weighted(gnet.FullyConnected, "fc", "f", rng.integers(-127, 128, size=(4, total)), 4)]
        tensors.update(g=dataclasses.replace(small, shape=(1, 1, total)), f=dataclasses.replace(small, shape=(total,)),
                       fc=dataclasses.replace(small, shape=(4,)))
        output = "fc"
    elif tail == "pool":
        layers.append(gnet.AveragePool(name="g", input="a", output="g"))
        tensors["g"], output = dataclasses.replace(small, shape=(1, 1, total)), "g"
    elif tail == "add":
        layers += [weighted(gnet.Conv2D, "k", "m", rng.integers(-127, 128, size=(total, 1, 1, total)), total),
                   gnet.Add(name="s", inputs=("a", "k"), output="s", params=add_params(0.1, 7, 0.1, 7, 0.1, 7))]
        tensors.update(k=small, s=small)
        output = "s"
    else:
        layers.append(gnet.AveragePool(name="p", input="a", output="p", kernel=(2, 2), stride=(2, 2)))
        tensors["p"], output = dataclasses.replace(small, shape=(1, 2, total)), "p"
    return gnet.Network(layers=tuple(layers), tensors=tensors, output=output, config=config)


def _run_placed(net, summary, config, images, descriptors, x):
    """Run the descriptors one after another with golden.engine.run_layer and the host layers in network order
    (inputs read with load_placed); each tensor, read with load_placed once its last writer ran (a concatenation's
    after its last slice), must be golden.network.run's. Returns the trace."""
    tensors = summary["tensors"]
    store_activation(images.activation, x, base=tensors[gnet.INPUT]["base"],
                     pitch=tensors[gnet.INPUT]["row_pitch"], config=config)
    _, trace = gnet.run(net, x[None], keep=True)
    engine = {layer["name"]: (layer, descriptor) for layer, descriptor in zip(summary["layers"], descriptors)}
    host = {layer["name"] for layer in summary["host_layers"]}
    flattened = {layer.output: layer.input for layer in net.layers if layer.kind == "flatten"}
    writers = {}                  # tensor -> the layers still to write it
    for layer in summary["layers"]:
        writers.setdefault(tensors[layer["output"]].get("concat", layer["output"]), set()).add(layer["name"])
    for layer in net.layers:
        if layer.name in engine:
            entry, descriptor = engine[layer.name]
            run_layer(descriptor, images, config)
            tensor = tensors[entry["output"]].get("concat", entry["output"])
            writers[tensor].discard(layer.name)
        elif layer.name in host:
            values = {name: load_placed(images.activation, tensors[flattened.get(name, name)], config).reshape(
                1, *net.tensors[name].shape) for name in layer.inputs}
            place, tensor = tensors[layer.output], layer.output
            store_activation(images.activation, gnet.layer_output(net, layer, values)[0].reshape(place["shape"]),
                             base=place["base"], pitch=place["row_pitch"], config=config)
        else:
            continue
        if not writers.get(tensor):
            np.testing.assert_array_equal(load_placed(images.activation, tensors[tensor], config).reshape(-1),
                                          trace.tensors[tensor][0].reshape(-1), tensor)
    return trace


@pytest.mark.parametrize("tail", ["conv", "fc", "pool", "add", "host"])
@pytest.mark.parametrize("branch_channels, function", [((5, 12), "relu"), ((12, 8, 3), "logistic")])
def test_concat_off_the_lanes_runs_on_the_engine_with_gaps(tmp_path, branch_channels, function, tail):
    rng = np.random.default_rng(13)
    net = _fire_network(rng, NPUConfig(act_depth=512, weight_depth=128, bias_depth=32), branch_channels, function,
                        tail)
    summary = write_images(net, tmp_path)
    assert summary["host_layers"] == {"host": [{"name": "p", "kind": "average_pool"}],
                                      "add": [{"name": "s", "kind": "add"}]}.get(tail, [])
    tensors = summary["tensors"]
    lanes, groups = 8, [-(-count // 8) for count in branch_channels]
    starts = np.cumsum([0] + groups[:-1])
    # Each input starts a channel group; the channels between are gaps. The ReLU after the concat is fused into
    # every branch (its tensor is the concatenated one), and the channel-wise layers after it keep the layout.
    channels = [int(start) * lanes + c for start, count in zip(starts, branch_channels) for c in range(count)]
    stored = int(starts[-1]) * lanes + branch_channels[-1]
    assert "cat" not in tensors and tensors["relu"]["channels"] == channels
    assert [(tensors[name]["base"] - tensors["relu"]["base"], tensors[name]["skew"])
            for name in ("b0", "r1", f"b{len(branch_channels) - 1}")[:len(branch_channels)]] == [
        (int(start), int(start) % lanes) for start in starts]
    for name in ("relu", "m", "a") + (("g",) if tail in ("fc", "pool") else ()):
        assert tensors[name]["shape"][2] == stored and tensors[name]["channels"] == channels, name
    assert all("channels" not in tensors[name] for name in ("c", "fc", "k", "s", "p") if name in tensors)
    branches = [layer for layer in summary["layers"] if layer["name"].startswith("b")]
    assert [layer["activations"] for layer in branches] == [
        ["r1", "relu"] if layer["name"] == "b1" else ["relu"] for layer in branches]
    config, images, descriptors, _ = read_images(tmp_path)
    x = rng.integers(-128, 128, size=(6, 7, 3))
    trace = _run_placed(net, summary, config, images, descriptors, x)
    assert len(np.unique(trace.tensors["a"])) > 20 and len(np.unique(trace.tensors[net.output])) > 1


def test_two_bit_layers_reading_gaps_are_stored_as_int8(tmp_path):
    # A code has no zero weight (UQ, SPTQ, MSPTQ), so a layer whose input has gaps is stored as int8 words on an
    # engine with the decoder; the branch before the concat (no gaps in its input) stays two-bit.
    rng = np.random.default_rng(21)
    config = NPUConfig(act_depth=512, weight_depth=128, bias_depth=32, weight_code_bits=2)
    net = _fire_network(rng, config, (5, 12), "relu", "conv")
    coded = {name: dataclasses.replace(net.layer(name), codebook=SPTQ * 30,
                                       weights=(SPTQ * 30)[rng.integers(0, 4, size=net.layer(name).weights.shape)])
             for name in ("b0", "d", "c")}
    net = dataclasses.replace(net, layers=tuple(coded.get(layer.name, layer) for layer in net.layers))
    summary = write_images(net, tmp_path)
    assert summary["host_layers"] == []
    config, images, descriptors, _ = read_images(tmp_path)
    assert {layer["name"]: d.weight_format for layer, d in zip(summary["layers"], descriptors)
            if layer["codebook"] is not None} == {"b0": 1, "d": 0, "c": 0}
    _run_placed(net, summary, config, images, descriptors, rng.integers(-128, 128, size=(6, 7, 3)))
