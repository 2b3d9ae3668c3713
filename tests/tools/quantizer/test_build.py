"""tools/quantizer/build.py: mixed_network takes exactly the named layers from the donor network."""

import numpy as np
import pytest

from golden import network as gnet
from tools.quantizer.build import build_network, mixed_network
from tools.quantizer.calibrate import calibrate


def _weighted(network):
    return [layer.name for layer in network.layers if hasattr(layer, "weights")]


def test_mixed_network_takes_the_named_layers(builtin_channel_networks):
    graph, images, networks = builtin_channel_networks
    base, donor = networks[8], networks[4]
    names = _weighted(base)
    mixed = mixed_network(base, donor, ["conv0", "fc17"])
    for layer, own, other in zip(mixed.layers, base.layers, donor.layers):
        assert layer is (other if layer.name in ("conv0", "fc17") else own)
    x = gnet.quantize_input(base, images)
    assert np.array_equal(gnet.run(mixed_network(base, donor, names), x), gnet.run(donor, x))
    assert np.array_equal(gnet.run(mixed_network(base, donor, []), x), gnet.run(base, x))
    assert not np.array_equal(gnet.run(mixed, x), gnet.run(base, x))


def test_mixed_network_refuses_other_tensors_and_unknown_layers(builtin_channel_networks):
    graph, images, networks = builtin_channel_networks
    with pytest.raises(ValueError, match="not a layer of both networks: conv99"):
        mixed_network(networks[8], networks[4], ["conv0", "conv99"])
    other_ranges = calibrate(graph, images[:2], progress=False)
    other = build_network(graph, other_ranges, method="channel", weight_bits=4)[0]
    with pytest.raises(ValueError, match="tensors differently"):
        mixed_network(networks[8], other, ["conv0"])
