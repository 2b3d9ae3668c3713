"""golden/layouts.py and golden/images.py two-bit weight images: code packing against string arithmetic, codebook
entries, decoded network images run layer after layer as the network."""

import dataclasses

import numpy as np
import pytest

from golden import network as gnet
from golden.config import NPUConfig
from golden.engine import run_layer
from golden.hexfile import read_hex
from golden.images import read_images, read_weight_codes, store_activation, store_weights, write_images
from golden.layouts import (CODE_BITS, codebook_fields, decode_code_words, decode_codebook_entry,
                            encode_codebook_entry, pack_words, weight_codes)

UQ, SPTQ = np.array([-3, -1, 1, 3]), np.array([-4, -1, 1, 4])


def _pack_by_strings(codes, lanes):
    # Lane i = r*lanes + c occupies bits [2i+1 : 2i]: lane 0 is the LAST two characters of the binary string.
    flat = np.asarray(codes).reshape(-1, lanes * lanes)
    return [int("".join(format(int(code), "02b") for code in reversed(row)), 2) for row in flat]


def _unpack_by_strings(word, lanes):
    bits = format(word, f"0{2 * lanes * lanes}b")
    return [int(bits[len(bits) - 2 * i - 2:len(bits) - 2 * i], 2) for i in range(lanes * lanes)]


@pytest.mark.parametrize("lanes", [2, 4, 8])
def test_code_words_pack_and_decode_against_strings(lanes):
    rng = np.random.default_rng(lanes)
    config = NPUConfig(lanes=lanes)
    codes = rng.integers(0, 4, size=(50, lanes, lanes))
    codes[0] = 3                                   # every bit set: the top lane's bits reach bit 2*lanes**2 - 1
    codes[1] = 0
    words = pack_words(codes.reshape(len(codes), -1), CODE_BITS)
    assert words == _pack_by_strings(codes, lanes)
    assert words[0] == (1 << 2 * lanes * lanes) - 1 and words[1] == 0
    for word, row in zip(words, codes):
        assert _unpack_by_strings(word, lanes) == row.reshape(-1).tolist()
    decoded = decode_code_words(words, SPTQ * 9, config)
    assert decoded.dtype == np.int8 and decoded.shape == codes.shape
    np.testing.assert_array_equal(decoded, [[[(SPTQ * 9)[c] for c in row] for row in word] for word in codes])
    # The codebook's extremes: int8 -128 and 127.
    np.testing.assert_array_equal(decode_code_words(words[:1], [-128, -1, 0, 127], config),
                                  np.full((1, lanes, lanes), 127))


def test_weight_codes_are_codebook_positions():
    weights = np.array([[-4, -1], [1, 4]])
    np.testing.assert_array_equal(weight_codes(weights, SPTQ), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(weight_codes(UQ[[3, 0, 2, 1]], UQ), [3, 0, 2, 1])
    for bad in ([0], [2], [5], [-5]):
        with pytest.raises(ValueError, match=r"a weight is not in the codebook \[-4, -1, 1, 4\]"):
            weight_codes(np.array(bad), SPTQ)


def test_codebook_entry_fields_and_round_trip():
    config = NPUConfig()            # weight_depth 1024: code_base has 10 bits
    fields = codebook_fields(config)
    assert [(name, width) for name, width, _ in fields] == [("code0", 8), ("code1", 8), ("code2", 8), ("code3", 8),
                                                             ("two_bit", 1), ("code_base", 10)]
    word = encode_codebook_entry(np.array([-128, -1, 1, 127]), 1023, config)
    # Independent: the bytes 0x80, 0xff, 0x01, 0x7f from bit 0, then the flag, then the base.
    assert word == 0x80 | 0xFF << 8 | 0x01 << 16 | 0x7F << 24 | 1 << 32 | 1023 << 33
    codebook, base = decode_codebook_entry(word, config)
    assert codebook.tolist() == [-128, -1, 1, 127] and base == 1023
    assert encode_codebook_entry(None, 0, config) == 0 and decode_codebook_entry(0, config) == (None, 0)
    with pytest.raises(ValueError, match="codebook must be 4 ascending int8 values"):
        encode_codebook_entry(np.array([1, -1, 2, 3]), 0, config)
    with pytest.raises(ValueError, match="codebook must be 4 ascending int8 values"):
        encode_codebook_entry(np.array([-1, 1, 3, 128]), 0, config)
    with pytest.raises(ValueError, match=r"code_base must be an integer in \[0, 1023\], not 1024"):
        encode_codebook_entry(SPTQ, 1024, config)


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


def test_two_bit_network_images_decode_to_the_int8_image_and_run_as_the_network(tmp_path):
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
        codes = np.array([_unpack_by_strings(word, 8) for word in words[code_base:code_base + n]]).reshape(n, 8, 8)
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
