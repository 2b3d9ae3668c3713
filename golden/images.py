"""Memory images of the convolution engine: tensors, weights and biases in memory, and a network's ROM files.

Images are NumPy arrays (:class:`MemoryImages`) in the layouts of ``golden.layouts``; :func:`write_images` writes the
ROM images of a whole :class:`golden.network.Network` (placed by ``golden.placement``) as ``$readmemh`` files
(``golden.hexfile``) and :func:`read_images` reads them back (docs/memory.md).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from .config import NPUConfig
from .descriptor import decode_descriptor, descriptor_fields, encode_descriptor
from .hexfile import read_hex, write_hex
from .layouts import (CODE_BITS, CODE_WORDS_PER_WORD, TABLE_ENTRIES, activation_location, bias_word_width, groups,
                      join_code_words, pack_bias_words, pack_words, row_pitch, split_code_words, unpack_bias_words,
                      unpack_words, UNWEIGHTED, weight_codes, weight_word_span, weight_words)
from .placement import plan_network

__all__ = ["MemoryImages", "store_activation", "load_activation", "load_placed", "store_weights", "store_weight_codes",
           "read_code_words", "store_bias", "write_images", "read_images"]


@dataclasses.dataclass(eq=False)
class MemoryImages:
    """The contents of the engine's memories.

    Members
    -------
    activation : numpy.ndarray
        int8 ``(lanes, act_depth, lanes)``: bank, address, channel lane.
    weights : numpy.ndarray
        int8 ``(weight_depth, lanes, lanes)``: address, row, column (see :func:`store_weights`); the word's
        ``8 lanes**2`` bits, lane ``r*lanes + c`` at bits ``[8(r*lanes + c) + 7 : 8(r*lanes + c)]``, so that words
        holding two-bit code words (:func:`store_weight_codes`) are the same bits.
    bias, channel_shift : numpy.ndarray
        int64 ``(bias_depth, lanes)``: int32 bias and WESS shift k_c of each lane.
    tables : numpy.ndarray
        int8 ``(table_depth, 256)``: the activation tables, entry ``i`` of a table the output for int8 input
        ``i - 128`` (docs/memory.md section 3a).
    """

    activation: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    channel_shift: np.ndarray
    tables: np.ndarray

    @classmethod
    def empty(cls, config):
        """All-zero images of ``config``'s memory sizes."""
        lanes = config.lanes
        return cls(activation=np.zeros((lanes, config.act_depth, lanes), dtype=np.int8),
                   weights=np.zeros((config.weight_depth, lanes, lanes), dtype=np.int8),
                   bias=np.zeros((config.bias_depth, lanes), dtype=np.int64),
                   channel_shift=np.zeros((config.bias_depth, lanes), dtype=np.int64),
                   tables=np.zeros((config.table_depth, TABLE_ENTRIES), dtype=np.int8))


def store_activation(activation, x, *, base, config, pitch=None, skew=0):
    """Write an int8 tensor ``(H, W, C)`` into an activation image at ``base`` (banks turned by ``skew``,
    :func:`golden.layouts.activation_location`); padding lanes are written as 0.

    Returns:
        The row pitch used (default: :func:`golden.layouts.row_pitch`).
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must be (H, W, C), not of shape {x.shape}")
    height, width, channels = x.shape
    pitch = row_pitch(width, channels, config) if pitch is None else pitch
    lanes, count = config.lanes, groups(channels, config)
    padded = np.zeros((height, width, count * lanes), dtype=np.int8)
    padded[..., :channels] = x
    y, xx, g = np.meshgrid(np.arange(height), np.arange(width), np.arange(count), indexing="ij")
    bank, address = activation_location(y, xx, g, base=base, pitch=pitch, width=width, config=config, skew=skew)
    if address.size and (address.min() < 0 or address.max() >= activation.shape[1]):
        raise ValueError(f"a tensor {x.shape} at {base} does not fit {activation.shape[1]} words per bank")
    activation[bank, address] = padded.reshape(height, width, count, lanes)
    return pitch


def load_activation(activation, shape, *, base, config, pitch=None, skew=0):
    """Read a tensor ``(H, W, C)`` back from an activation image (inverse of :func:`store_activation`)."""
    height, width, channels = shape
    pitch = row_pitch(width, channels, config) if pitch is None else pitch
    count = groups(channels, config)
    y, xx, g = np.meshgrid(np.arange(height), np.arange(width), np.arange(count), indexing="ij")
    bank, address = activation_location(y, xx, g, base=base, pitch=pitch, width=width, config=config, skew=skew)
    words = activation[bank, address].reshape(height, width, count * config.lanes)
    return words[..., :channels].astype(np.int64)


def load_placed(activation, place, config):
    """A tensor read back from where ``golden.placement`` put it (``place``: its ``tensors`` entry, ``shape``,
    ``base``, ``row_pitch``, ``skew`` and, for a tensor with gaps, ``channels``): the network's tensor, its own
    channels only."""
    tensor = load_activation(activation, tuple(place["shape"]), base=place["base"], pitch=place["row_pitch"],
                             config=config, skew=place.get("skew", 0))
    return tensor[..., place["channels"]] if "channels" in place else tensor


def store_weights(weights_image, kind, weights, *, base, config):
    """Write a layer's int8 weights into a weight image; returns the number of words.

    * ``conv`` (OHWI ``(Cout, KH, KW, Cin)``) and ``fully_connected`` (``(Cout, Cin)``, or OHWI for a flattened
      input): word ``((go*KH + ky)*KW + kx)*Gin + gi`` holds ``w[go*L + r, ky, kx, gi*L + c]`` at row ``r``,
      column ``c``.
    * ``depthwise`` (``(KH, KW, C)``): word ``b*KH*KW + ky*KW + kx`` holds ``w[ky, kx, b*L*L + r*L + c]`` at row ``r``,
      column ``c`` (a block of ``L*L`` channels per word: row ``r`` serves channel group ``b*L + r``).

    Missing channels (counts not multiple of ``L``) are zeros.
    """
    words = _layer_words(kind, weights, config)
    if base + len(words) > len(weights_image):
        raise ValueError(f"{len(words)} weight words at {base} exceed the {len(weights_image)}-word weight memory")
    weights_image[base:base + len(words)] = words
    return len(words)


def store_weight_codes(weights_image, kind, codes, *, base, config):
    """Write a two-bit layer's codes (0..3, :func:`golden.layouts.weight_codes`) into a weight image from code word
    ``base``; returns the number of code words.

    Code word ``base + n`` holds what int8 word ``n`` of :func:`store_weights` would (missing channels code 0), two
    bits per element; it is quarter ``(base + n) mod 4`` of memory word ``(base + n) div 4``
    (:func:`golden.layouts.join_code_words`). The other quarters of the words it touches keep their contents.
    """
    words = _layer_words(kind, codes, config)
    first, offset = divmod(base, CODE_WORDS_PER_WORD)
    end = -(-(base + len(words)) // CODE_WORDS_PER_WORD)
    if end > len(weights_image):
        raise ValueError(f"{len(words)} code words at {base} exceed the {len(weights_image)}-word weight memory")
    code_words = read_code_words(weights_image, first * CODE_WORDS_PER_WORD, (end - first) * CODE_WORDS_PER_WORD,
                                 config)
    code_words[offset:offset + len(words)] = pack_words(words.reshape(len(words), -1), CODE_BITS)
    weights_image[first:end] = unpack_words(join_code_words(code_words, config), 8, config.macs).reshape(
        end - first, config.lanes, config.lanes)
    return len(words)


def read_code_words(weights_image, base, count, config):
    """Code words ``base .. base + count - 1`` of a weight image, packed (``golden.layouts.decode_code_words`` decodes
    them)."""
    first, offset = divmod(base, CODE_WORDS_PER_WORD)
    end = -(-(base + count) // CODE_WORDS_PER_WORD)
    words = pack_words(weights_image[first:end].reshape(end - first, -1), 8)
    return split_code_words(words, config)[offset:offset + count]


def _layer_words(kind, weights, config):
    # A layer's weights (or codes) in weight word order (store_weights), (words, lanes, lanes), missing channels 0.
    lanes = config.lanes
    weights = np.asarray(weights)
    if kind == "fully_connected" and weights.ndim == 2:
        weights = weights[:, None, None, :]
    if kind in ("conv", "fully_connected"):
        cout, kh, kw, cin = weights.shape
        gout, gin = groups(cout, config), groups(cin, config)
        padded = np.zeros((gout * lanes, kh, kw, gin * lanes), dtype=np.int8)
        padded[:cout, :, :, :cin] = weights
        words = padded.reshape(gout, lanes, kh, kw, gin, lanes).transpose(0, 2, 3, 4, 1, 5)
    elif kind == "depthwise":
        kh, kw, channels = weights.shape
        blocks = -(-channels // config.macs)
        padded = np.zeros((kh, kw, blocks * config.macs), dtype=np.int8)
        padded[..., :channels] = weights
        words = padded.reshape(kh, kw, blocks, lanes, lanes).transpose(2, 0, 1, 3, 4)
    else:
        raise ValueError(f"kind must be conv, fully_connected or depthwise, not {kind!r}")
    return words.reshape(-1, lanes, lanes)


def store_bias(bias_image, shift_image, bias, channel_shift, *, base, config):
    """Write int32 biases and WESS shifts k_c: word ``base + g`` holds channels ``g*L .. g*L + L - 1``."""
    lanes = config.lanes
    bias, channel_shift = np.asarray(bias, dtype=np.int64), np.asarray(channel_shift, dtype=np.int64)
    count = groups(len(bias), config)
    if base + count > len(bias_image):
        raise ValueError(f"{count} bias words at {base} exceed the {len(bias_image)}-word bias memory")
    if channel_shift.size and (channel_shift.min() < 0 or channel_shift.max() > config.max_channel_shift):
        raise ValueError(f"channel shifts must lie in [0, {config.max_channel_shift}]")
    for image, values in ((bias_image, bias), (shift_image, channel_shift)):
        padded = np.zeros(count * lanes, dtype=np.int64)
        padded[:len(values)] = values
        image[base:base + count] = padded.reshape(count, lanes)
    return count


def write_images(network, directory):
    """Write the engine's ROM images of a quantized network into ``directory``; return a JSON-able summary.

    Every layer the engine runs (conv, depthwise, fully connected — after a flatten too —, global average pool,
    residual add, max pool) gets its weights and biases placed one after another and a descriptor (an activation
    fused into it, a concatenation placed by its producers); activation tensors get regions of the activation memory
    (first fit, freed after their last reader: :func:`golden.placement.plan_network`).
    Files: ``weights.hex`` (``lanes**2 * 8``-bit words: int8 layers' weight words and, on an engine with
    ``weight_code_bits == 2``, the two-bit layers' code words four to a word, docs/memory.md section 2a),
    ``bias.hex`` (``lanes * (32 + shift_bits)``-bit words: biases, then shifts, :func:`golden.layouts.bias_word_fields`),
    ``descriptors.hex`` (one :func:`golden.descriptor.encode_descriptor` word per engine layer, a two-bit layer's
    codebook in it), ``tables.hex`` (8-bit words: the activation tables fused into engine layers, 256 entries each,
    docs/memory.md section 3a) and ``memory.json`` (the summary). Layers the engine does not run (average pools other
    than the global one, broadcasting adds, activations not fused into an engine layer, concatenations not placed,
    elementwise Mul) are listed under ``host_layers``; memories larger than the configuration are reported with ``fits: false`` rather than refused, so that a network too large
    for the on-chip memories still gets its images.

    Args:
        network: a :class:`golden.network.Network`.
        directory: an existing folder.
    Returns:
        dict: ``config``, ``files``, ``layers`` (descriptor fields, the tensor written (``output``), the layer's
        ``codebook`` and its fused ``activation``'s name by layer),
        ``tensors`` (placement), ``host_layers``, ``words_needed`` (of each memory), ``weight_memory_bits``
        (``stored``: the weight memory's words as placed, ``int8_layers`` and ``two_bit_layers`` its words of each
        format, ``all_int8``: every layer as int8 words) and ``fits``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} does not exist")
    config = network.config
    plan = plan_network(network, config)
    big = plan["config"]
    images = MemoryImages(activation=np.zeros((config.lanes, 1, config.lanes), dtype=np.int8),
                          weights=np.zeros((plan["words"]["weights"], config.lanes, config.lanes), dtype=np.int8),
                          bias=np.zeros((plan["words"]["bias"], config.lanes), dtype=np.int64),
                          channel_shift=np.zeros((plan["words"]["bias"], config.lanes), dtype=np.int64),
                          tables=np.zeros((plan["words"]["tables"], TABLE_ENTRIES), dtype=np.int8))
    descriptors = []
    word_bits = config.macs * 8
    bits = {"int8_layers": 0, "two_bit_layers": 0, "all_int8": 0}
    for entry in plan["layers"]:
        descriptor = entry["descriptor"]
        if descriptor.table:
            images.tables[descriptor.table_base] = entry["table"]
        if descriptor.kind not in UNWEIGHTED:
            weights = entry["weights"]
            if descriptor.weight_format:
                store_weight_codes(images.weights, descriptor.kind, weight_codes(weights, entry["codebook"]),
                                   base=descriptor.weight_base, config=config)
            else:
                store_weights(images.weights, descriptor.kind, weights, base=descriptor.weight_base, config=config)
            first, end = weight_word_span(descriptor, config)
            bits["two_bit_layers" if descriptor.weight_format else "int8_layers"] += (end - first) * word_bits
            bits["all_int8"] += weight_words(descriptor, config) * word_bits
            store_bias(images.bias, images.channel_shift, entry["bias"], entry["channel_shift"],
                       base=descriptor.bias_base, config=config)
        descriptors.append(encode_descriptor(descriptor, big))
    files = {"weights.hex": (pack_words(images.weights.reshape(len(images.weights), -1), 8), word_bits),
             "bias.hex": (pack_bias_words(images.bias, images.channel_shift, config), bias_word_width(config)),
             "descriptors.hex": (descriptors, sum(width for _, width, _ in descriptor_fields(big))),
             "tables.hex": ([int(entry) & 0xFF for entry in images.tables.reshape(-1)], 8)}
    summary = {
        "config": json.loads(config.to_json()),
        "descriptor_config": json.loads(big.to_json()),
        "files": {name: {"words": len(words), "width": width} for name, (words, width) in files.items()},
        "layers": [{"name": entry["layer"].name, "output": entry["output"],
                    **dataclasses.asdict(entry["descriptor"]),
                    "activation": entry["activations"][-1].name if entry["activations"] else None,
                    "activations": [activation.name for activation in entry["activations"]],
                    "codebook": None if entry["codebook"] is None else entry["codebook"].tolist()}
                   for entry in plan["layers"]],
        "tensors": plan["tensors"],
        "host_layers": plan["host_layers"],
        "words_needed": plan["words"],
        "weight_memory_bits": {"stored": plan["words"]["weights"] * word_bits, **bits},
        "fits": plan["words"]["activation"] <= config.act_depth and plan["words"]["weights"] <= config.weight_depth
        and plan["words"]["bias"] <= config.bias_depth and plan["words"]["tables"] <= config.table_depth,
    }
    written = []
    try:
        for name, (words, width) in files.items():
            write_hex(directory / name, words, width)
            written.append(directory / name)
        (directory / "memory.json").write_text(json.dumps(summary, indent=1) + "\n")
    except OSError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return summary


def read_images(directory):
    """Read what :func:`write_images` wrote: ``(config, images, descriptors, summary)``.

    ``config`` is the configuration the descriptors were encoded for (``descriptor_config``: the network's, with
    memory depths raised to what the network needs); ``images`` holds the weight, bias and table ROMs at that size
    and an empty activation memory; ``descriptors`` are the engine layers'
    :class:`golden.descriptor.LayerDescriptor` s in order.
    """
    directory = Path(directory)
    summary = json.loads((directory / "memory.json").read_text())
    config = NPUConfig(**summary["descriptor_config"])
    lanes = config.lanes
    images = MemoryImages.empty(config)
    weights = unpack_words(read_hex(directory / "weights.hex"), 8, config.macs)
    images.weights[:len(weights)] = weights.reshape(-1, lanes, lanes)
    words = read_hex(directory / "bias.hex")
    images.bias[:len(words)], images.channel_shift[:len(words)] = unpack_bias_words(words, config)
    entries = unpack_words(read_hex(directory / "tables.hex"), 8, 1).reshape(-1, TABLE_ENTRIES)
    images.tables[:len(entries)] = entries
    descriptors = [decode_descriptor(word, config) for word in read_hex(directory / "descriptors.hex")]
    return config, images, descriptors, summary
