"""golden/placement.py: no activation tensor is overwritten while a layer of any kind (engine or host) still reads
it, on hand-made graphs, the reference model and MobileNetV2's layer graph; their residual adds are engine layers, and
their images, run descriptor by descriptor with golden.engine.run_layer, give every tensor golden.network.run gives;
residual-free networks keep their first-fit placement."""

import numpy as np
import pytest

from golden import network as gnet
from golden.add import add_params
from golden.config import NPUConfig
from golden.engine import run_layer
from golden.images import read_images, store_activation, write_images
from golden.layouts import activation_words
from golden.placement import plan_network


def assert_no_live_tensor_overwritten(network, plan):
    """Walk ``network``'s layers in execution order; fail where a layer writes words of a tensor that it or a later
    layer (of any kind) still reads, or of the network output, which lives to the end.

    Every tensor a layer reads or writes must be placed; a flatten writes nothing (its output is its input's words).
    """
    aliases = {}
    for layer in network.layers:
        if layer.kind == "flatten":
            aliases[layer.output] = aliases.get(layer.input, layer.input)
    steps = [layer for layer in network.layers if layer.kind != "flatten"]
    last_read = {aliases.get(name, name): index for index, layer in enumerate(steps) for name in layer.inputs}
    last_read[aliases.get(network.output, network.output)] = len(steps)

    def region(name):
        assert name in plan["tensors"], f"tensor {name!r} has no place in the activation memory"
        placed = plan["tensors"][name]
        return placed["base"], placed["base"] + placed["words"]

    written = [gnet.INPUT]
    for index, layer in enumerate(steps):
        for name in layer.inputs:
            region(aliases.get(name, name))
        start, end = region(layer.output)
        for name in written:
            base, top = region(name)
            assert not (last_read.get(name, -1) >= index and start < top and base < end), \
                f"{layer.name} writes [{start}, {end}) over {name!r} at [{base}, {top}), still read by " \
                f"{steps[last_read[name]].name if last_read[name] < len(steps) else 'the network output'}"
        written.append(layer.output)


class Graph:
    """A small network built layer by layer: random int8 weights, scalar requantization, one scale everywhere."""

    def __init__(self, seed, shape):
        self.rng = np.random.default_rng(seed)
        self.layers, self.shapes = [], {gnet.INPUT: tuple(shape)}

    def _weighted(self, cls, name, source, weights, channels, **extra):
        self.layers.append(cls(name=name, input=source, output=name, weights=weights,
                               bias=self.rng.integers(-500, 500, size=channels), multiplier=1 << 30, shift=-8,
                               channel_shift=np.zeros(channels, dtype=np.int64), weight_scale=np.ones(channels),
                               **extra))

    def conv(self, name, source, channels, kernel=1, stride=1):
        """A ``kernel`` x ``kernel`` convolution, padded to keep ``ceil(size / stride)``."""
        height, width, cin = self.shapes[source]
        pad = kernel // 2
        self._weighted(gnet.Conv2D, name, source, self.rng.integers(-3, 4, size=(channels, kernel, kernel, cin)),
                       channels, stride=(stride, stride), padding=(pad,) * 4)
        self.shapes[name] = ((height - 1) // stride + 1, (width - 1) // stride + 1, channels)
        return name

    def depthwise(self, name, source, stride=1):
        """A 3x3 depthwise convolution, padded by 1."""
        height, width, channels = self.shapes[source]
        self._weighted(gnet.DepthwiseConv2D, name, source, self.rng.integers(-3, 4, size=(3, 3, channels)), channels,
                       stride=(stride, stride), padding=(1, 1, 1, 1))
        self.shapes[name] = ((height - 1) // stride + 1, (width - 1) // stride + 1, channels)
        return name

    def add(self, name, first, second):
        """A residual add."""
        self.layers.append(gnet.Add(name=name, inputs=(first, second), output=name,
                                    params=add_params(0.1, 0, 0.1, 0, 0.1, 0)))
        self.shapes[name] = self.shapes[first]
        return name

    def classifier(self, source, classes):
        """Global average pool, flatten, fully connected."""
        self.layers.append(gnet.AveragePool(name="pool", input=source, output="pool"))
        self.shapes["pool"] = (1, 1, self.shapes[source][2])
        self.layers.append(gnet.Flatten(name="flat", input="pool", output="flat"))
        self.shapes["flat"] = (self.shapes[source][2],)
        weights = self.rng.integers(-3, 4, size=(classes, self.shapes["flat"][0]))
        self._weighted(gnet.FullyConnected, "fc", "flat", weights, classes)
        self.shapes["fc"] = (classes,)
        return "fc"

    def network(self, output, config=NPUConfig()):
        tensors = {name: gnet.Tensor(shape=shape, scale=0.1, zero_point=0) for name, shape in self.shapes.items()}
        return gnet.Network(layers=tuple(self.layers), tensors=tensors, output=output, config=config)


def chain(seed, shape, steps, output=None):
    """A network of 1x1 convs ``(name, source, channels)`` and adds ``(name, (first, second))``; its output is the
    last step's unless named."""
    g = Graph(seed, shape)
    for name, source, *channels in steps:
        if channels:
            g.conv(name, source, channels[0])
        else:
            g.add(name, *source)
    return g.network(output or steps[-1][0])


# The add reads c0, which no engine layer reads after c1.
RESIDUAL_BLOCK = [("c0", gnet.INPUT, 8), ("c1", "c0", 16), ("c2", "c1", 8), ("a3", ("c0", "c2")), ("c4", "a3", 8)]
HAND_MADE = {
    "residual block": ((6, 6, 8), RESIDUAL_BLOCK, None),
    # Two adds read c0, the second (as its second input) long after any engine layer read it.
    "two adds sharing an input": ((6, 6, 8), [("c0", gnet.INPUT, 8), ("c1", "c0", 8), ("a2", ("c0", "c1")),
                                              ("c3", "a2", 24), ("c4", "c3", 8), ("a5", ("c4", "c0")),
                                              ("c6", "a5", 8)], None),
    # The output is written by an add: it must have a place.
    "add as output": ((4, 4, 8), [("c0", gnet.INPUT, 8), ("c1", "c0", 8), ("a2", ("c0", "c1"))], None),
    # The output c1 is written before two more layers run (a side branch): it lives to the end.
    "output before other layers": ((4, 4, 8), [("c0", gnet.INPUT, 8), ("c1", "c0", 8), ("c2", "c0", 8),
                                               ("c3", "c0", 8)], "c1"),
}


def mobilenet_v2(size=32, classes=10):
    """torchvision MobileNetV2's layer graph (inverted residual blocks, 10 residual adds) at ``size`` x ``size``."""
    g = Graph(5, (size, size, 3))
    x = g.conv("stem", gnet.INPUT, 32, kernel=3, stride=2)
    channels, block = 32, 0
    for expansion, out, repeats, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for repeat in range(repeats):
            step = stride if repeat == 0 else 1
            y = x if expansion == 1 else g.conv(f"b{block}_expand", x, channels * expansion)
            y = g.depthwise(f"b{block}_dw", y, stride=step)
            y = g.conv(f"b{block}_project", y, out)
            x = g.add(f"b{block}_add", x, y) if step == 1 and channels == out else y
            channels, block = out, block + 1
    return g.network(g.classifier(g.conv("head", x, 1280), classes))


@pytest.mark.parametrize("shape, steps, output", HAND_MADE.values(), ids=HAND_MADE.keys())
def test_hand_made_graphs_keep_live_tensors(shape, steps, output):
    network = chain(len(steps), shape, steps, output)
    assert_no_live_tensor_overwritten(network, plan_network(network, network.config))


def test_mobilenet_v2_graph_keeps_live_tensors():
    network = mobilenet_v2()
    assert sum(layer.kind == "add" for layer in network.layers) == 10
    plan = plan_network(network, network.config)
    assert plan["host_layers"] == []
    assert sum(entry["descriptor"].kind == "add" for entry in plan["layers"]) == 10
    assert_no_live_tensor_overwritten(network, plan)


def assert_images_run_as_the_network(network, x, directory):
    """Write ``network``'s images, run its descriptors one after another with golden.engine.run_layer from the input
    ``x`` (H, W, C) and compare every layer's output with golden.network.run's."""
    summary = write_images(network, directory)
    assert summary["host_layers"] == []
    config, images, descriptors, _ = read_images(directory)
    placed = summary["tensors"][gnet.INPUT]
    store_activation(images.activation, x, base=placed["base"], pitch=placed["row_pitch"], config=config)
    _, trace = gnet.run(network, x[None], keep=True)
    layers = [layer for layer in network.layers if layer.kind != "flatten"]
    assert [d.kind for d in descriptors] == [layer.kind for layer in layers]
    for descriptor, layer in zip(descriptors, layers):
        output, _ = run_layer(descriptor, images, config)
        np.testing.assert_array_equal(output.reshape(-1), trace.tensors[layer.output][0].reshape(-1), layer.name)


@pytest.mark.parametrize("name", [*HAND_MADE, "mobilenet_v2"])
def test_networks_with_adds_run_from_their_images(name, tmp_path):
    network = mobilenet_v2(size=16) if name == "mobilenet_v2" else chain(len(HAND_MADE[name][1]), *HAND_MADE[name])
    x = np.random.default_rng(7).integers(-128, 128, size=network.tensors[gnet.INPUT].shape)
    assert_images_run_as_the_network(network, x, tmp_path)


def test_reference_model_keeps_live_tensors(quantized_reference):
    networks, _ = quantized_reference
    stored = {method: network for method, network in networks.items()
              if not any(getattr(layer, "per_channel", False) for layer in network.layers)}
    assert "wess" in stored and "channel" not in stored      # per-channel multipliers: the engine stores none
    for network in stored.values():
        assert sum(layer.kind == "add" for layer in network.layers) == 2
        assert_no_live_tensor_overwritten(network, plan_network(network, network.config))


def test_reference_model_runs_from_its_images(quantized_reference, tmp_path):
    networks, x = quantized_reference
    assert_images_run_as_the_network(networks["wess"], np.asarray(x[0], dtype=np.int64), tmp_path)


def test_checker_sees_an_overwrite():
    network = chain(1, (6, 6, 8), RESIDUAL_BLOCK)
    bases = {gnet.INPUT: 0, "c0": 6, "c1": 12, "c2": 0, "a3": 12, "c4": 0}
    words = {name: 12 if name == "c1" else 6 for name in bases}

    def plan(**moved):
        return {"tensors": {name: {"base": moved.get(name, base), "words": words[name]}
                            for name, base in bases.items()}}

    assert_no_live_tensor_overwritten(network, plan())
    for moved, message in (({"c2": 6}, "c2 writes .* over 'c0' .* still read by a3"),
                           ({"a3": 6}, "a3 writes .* over 'c0' .* still read by a3"),
                           ({"c4": 12}, "c4 writes .* over 'a3' .* still read by c4")):
        with pytest.raises(AssertionError, match=message):
            assert_no_live_tensor_overwritten(network, plan(**moved))
    incomplete = plan()
    del incomplete["tensors"]["a3"]
    with pytest.raises(AssertionError, match="'a3' has no place"):
        assert_no_live_tensor_overwritten(network, incomplete)


def test_residual_free_chain_is_placed_first_fit():
    """A chain of engine layers: each output goes to the first gap beside its input, the input is freed after it."""
    g = Graph(6, (4, 4, 8))
    for name, source in (("c0", gnet.INPUT), ("c1", "c0"), ("c2", "c1")):
        g.conv(name, source, 16 if name == "c1" else 8)
    network = g.network(g.classifier("c2", 4))
    plan = plan_network(network, network.config)
    words = {name: activation_words(shape, network.config) for name, shape in g.shapes.items() if len(shape) == 3}
    assert words == {gnet.INPUT: 4, "c0": 4, "c1": 8, "c2": 4, "pool": 1}
    bases = {name: placed["base"] for name, placed in plan["tensors"].items()}
    assert bases == {gnet.INPUT: 0, "c0": 4, "c1": 8, "c2": 0, "pool": 4, "fc": 0}
    assert_no_live_tensor_overwritten(network, plan)


def test_strides_that_skip_the_last_rows_run_from_their_images(tmp_path):
    """A stride that does not divide the input leaves its last rows and columns unread (ResNet's 1x1 stride-2
    shortcut on an even map, a 2x2 max pool on an odd one): the engine runs such a layer on the input without them,
    at the tensor's row pitch, and gets the network's outputs."""
    g = Graph(11, (14, 14, 8))
    g.conv("c0", gnet.INPUT, 12)
    g.conv("shortcut", "c0", 16, kernel=1, stride=2)                  # 14 -> 7, row and column 13 unread
    g.layers.append(gnet.MaxPool(name="pool", input="shortcut", output="pool", kernel=(2, 2), stride=(2, 2)))
    g.shapes["pool"] = (3, 3, 16)                                     # 7 -> 3, row and column 6 unread
    network = g.network(g.conv("c1", "pool", 8))
    plan = plan_network(network, network.config)
    shortcut, pool = (entry["descriptor"] for entry in plan["layers"][1:3])
    assert (shortcut.in_height, shortcut.in_width, pool.in_height, pool.in_width) == (13, 13, 6, 6)
    x = np.random.default_rng(3).integers(-128, 128, size=(14, 14, 8))
    assert_images_run_as_the_network(network, x, tmp_path)


def test_dropping_columns_that_change_the_row_layout_leaves_the_layer_on_the_host():
    """A 2x2 max pool on a 9-wide map reads 8 columns: one word per channel group and row instead of two, another
    layout than the stored tensor's, so the layer runs on the host."""
    g = Graph(12, (9, 9, 8))
    g.conv("c0", gnet.INPUT, 8)
    g.layers.append(gnet.MaxPool(name="pool", input="c0", output="pool", kernel=(2, 2), stride=(2, 2)))
    g.shapes["pool"] = (4, 4, 8)
    network = g.network("pool")
    assert plan_network(network, network.config)["host_layers"] == [{"name": "pool", "kind": "max_pool"}]
