"""Memory word and bank layouts of the convolution engine (docs/memory.md sections 1 to 3).

Pure NumPy. The engine (``hdl/engine.py``) has three on-chip memories:

* **activation memory**: ``lanes`` banks of ``config.act_depth`` words; a word holds ``lanes`` int8 channels of one
  pixel. Channel group ``g`` (channels ``g*lanes .. g*lanes + lanes - 1``) of pixel ``(y, x)`` of a tensor stored at
  ``base`` with row pitch ``P`` lives in bank ``(x + g) mod lanes`` at address
  ``base + y*P + g*ceil(W/lanes) + x // lanes``. The skew ``(x + g) mod lanes`` lets the depthwise mapping read
  ``lanes`` different words per cycle without bank conflicts.
* **weight memory**: ``config.weight_depth`` words of ``lanes x lanes`` int8 weights.
* **bias memory**: ``config.bias_depth`` words of ``lanes`` int32 biases plus their ``lanes`` WESS shifts k_c
  (:func:`bias_word_fields`, the one definition of the word; ``hdl.layouts.bias_word`` is built from it).
* **two-bit weight codes** (layers with a codebook, ``golden.network.Conv2D.codebook``, on an engine with
  ``weight_code_bits == 2``): such a layer's weight words are ``lanes x lanes`` two-bit code words, four to a weight
  memory word (:func:`join_code_words`); :func:`decode_code_words` is the decoder that turns a code word into the
  int8 weight word with the layer's 4-entry codebook (which its descriptor carries).

Words are Python integers, lane 0 in the least significant bits (:func:`pack_words`). ``golden.images`` writes and
reads whole images with these layouts.
"""

import numpy as np

__all__ = [
    "address_bits", "groups", "row_pitch", "activation_words", "activation_location", "weight_words", "weight_word_span",
    "pack_words", "unpack_words", "pack_fields", "unpack_fields",
    "bias_word_fields", "bias_word_width", "pack_bias_words", "unpack_bias_words",
    "CODE_BITS", "CODE_WORDS_PER_WORD", "join_code_words", "split_code_words", "weight_codes", "decode_code_words",
    "TABLE_ENTRIES", "UNWEIGHTED",
]

#: Bits of one two-bit weight code; a code word packs ``lanes**2`` codes, element ``(r, c)`` at bits
#: ``[2*(r*lanes + c) + 1 : 2*(r*lanes + c)]``.
CODE_BITS = 2

#: Layer kinds without weights or biases.
UNWEIGHTED = ("average_pool", "add", "max_pool")

#: Entries of one activation table (one per int8 input; docs/memory.md section 3a).
TABLE_ENTRIES = 256

#: Two-bit code words per weight memory word (``8 lanes**2`` bits hold four ``2 lanes**2``-bit code words).
CODE_WORDS_PER_WORD = 8 // CODE_BITS


def address_bits(depth):
    """Width of an address into a memory of ``depth`` words."""
    return max(1, (depth - 1).bit_length())


def groups(channels, config):
    """Channel groups (activation words per pixel): ``ceil(channels / lanes)``."""
    return -(-channels // config.lanes)


def row_pitch(width, channels, config):
    """Words per bank that one image row occupies: ``groups * ceil(width / lanes)``."""
    return groups(channels, config) * -(-width // config.lanes)


def activation_words(shape, config):
    """Words per bank a tensor ``(H, W, C)`` occupies with the minimal row pitch."""
    height, width, channels = shape
    return height * row_pitch(width, channels, config)


def activation_location(y, x, group, *, base, pitch, width, config, skew=0):
    """``(bank, address)`` of the word holding channel group ``group`` of pixel ``(y, x)`` (broadcasting arrays).

    ``skew`` turns the banks: a tensor stored at ``base = B + g0 * ceil(width / lanes)`` with ``skew = g0`` (mod
    ``lanes``) is channel groups ``g0 ..`` of the tensor at ``B`` with the same pitch (a slice of a concatenation,
    docs/memory.md section 1).
    """
    y, x, group = (np.asarray(v, dtype=np.int64) for v in (y, x, group))
    bank = (x + group + skew) % config.lanes
    address = base + y * pitch + group * -(-width // config.lanes) + x // config.lanes
    return bank, address


def weight_words(descriptor, config):
    """Weight memory words of a layer: ``Gout*KH*KW*Gin`` (conv, fully connected) or ``ceil(C/lanes**2)*KH*KW``
    (depthwise); 0 for pools and adds."""
    window = descriptor.kernel_height * descriptor.kernel_width
    if descriptor.kind in UNWEIGHTED:
        return 0
    if descriptor.kind == "depthwise":
        return -(-descriptor.out_channels // config.macs) * window
    return groups(descriptor.out_channels, config) * window * groups(descriptor.in_channels, config)


def weight_word_span(descriptor, config):
    """``(first, end)``: the weight memory words a layer's weights occupy, ``[first, end)`` (words holding any of a
    two-bit layer's code words, whose ``weight_base`` counts code words: docs/memory.md section 2a)."""
    count = weight_words(descriptor, config)
    if not descriptor.weight_format:
        return descriptor.weight_base, descriptor.weight_base + count
    return (descriptor.weight_base // CODE_WORDS_PER_WORD,
            -(-(descriptor.weight_base + count) // CODE_WORDS_PER_WORD))


def pack_words(values, width):
    """Pack rows of integers (lane 0 in the least significant bits, two's complement) into Python ints."""
    values = np.asarray(values, dtype=np.int64)
    values = values.reshape(len(values), -1) & ((1 << width) - 1)
    shifts = [lane * width for lane in range(values.shape[1])]
    return [sum(int(v) << s for v, s in zip(row, shifts)) for row in values.tolist()]


def unpack_words(words, width, lanes, *, signed=True):
    """Inverse of :func:`pack_words`: an int64 array ``(len(words), lanes)``."""
    mask = (1 << width) - 1
    out = np.array([[(word >> (lane * width)) & mask for lane in range(lanes)] for word in words], dtype=np.int64)
    if signed:
        out = np.where(out >> (width - 1) == 1, out - (1 << width), out)
    return out.reshape(len(words), lanes)


def pack_fields(fields, values):
    """One word of named fields: ``fields`` are ``(name, width, signed)``, least significant first, two's complement.

    Examples:
        >>> hex(pack_fields((("low", 4, False), ("high", 8, True)), {"low": 5, "high": -1}))
        '0xff5'
    """
    value, offset = 0, 0
    for name, width, _ in fields:
        value |= (int(values[name]) & ((1 << width) - 1)) << offset
        offset += width
    return value


def unpack_fields(fields, value):
    """Inverse of :func:`pack_fields`: ``{name: value}`` (signed fields sign-extended)."""
    out, offset = {}, 0
    for name, width, signed in fields:
        field = (value >> offset) & ((1 << width) - 1)
        if signed and field >> (width - 1):
            field -= 1 << width
        out[name] = field
        offset += width
    return out


def bias_word_fields(config):
    """The bias memory word: its lane arrays ``(name, width, signed)``, least significant first.

    ``lanes`` biases of ``acc_bits`` (int32), then ``lanes`` WESS shifts k_c of ``shift_bits`` (unsigned); lane 0 of
    each array in its least significant bits (docs/memory.md section 3). The one definition of the word:
    :func:`pack_bias_words` / :func:`unpack_bias_words` and the RTL's ``hdl.layouts.bias_word`` are built from it.

    Examples:
        >>> from golden.config import NPUConfig
        >>> bias_word_fields(NPUConfig())
        (('bias', 32, True), ('channel_shift', 4, False))
    """
    return ("bias", config.acc_bits, True), ("channel_shift", config.shift_bits, False)


def bias_word_width(config):
    """Bits of one bias memory word: ``lanes * (acc_bits + shift_bits)``."""
    return config.lanes * sum(width for _, width, _ in bias_word_fields(config))


def pack_bias_words(bias, channel_shift, config):
    """Bias memory words (Python ints) of bias and shift images ``(words, lanes)`` (:func:`bias_word_fields`)."""
    words, offset = [0] * len(bias), 0
    for (_, width, _), values in zip(bias_word_fields(config), (bias, channel_shift)):
        words = [word | (packed << offset) for word, packed in zip(words, pack_words(values, width))]
        offset += config.lanes * width
    return words


def unpack_bias_words(words, config):
    """Inverse of :func:`pack_bias_words`: ``(bias, channel_shift)``, int64 arrays ``(len(words), lanes)``."""
    arrays, offset = [], 0
    for _, width, signed in bias_word_fields(config):
        arrays.append(unpack_words([word >> offset for word in words], width, config.lanes, signed=signed))
        offset += config.lanes * width
    return tuple(arrays)


def join_code_words(code_words, config):
    """Weight memory words (Python ints of ``8 lanes**2`` bits) holding two-bit code words (docs/memory.md section 2a).

    Code word ``n`` is quarter ``n mod 4`` of memory word ``n div 4``: bits ``[2 lanes**2 q, 2 lanes**2 (q + 1))``
    with ``q = n mod 4`` (:data:`CODE_WORDS_PER_WORD` code words per word); a last word short of code words gets 0s.

    Examples:
        >>> from golden.config import NPUConfig
        >>> [hex(word) for word in join_code_words([1, 2, 3, 0xff, 5], NPUConfig(lanes=2))]
        ['0xff030201', '0x5']
    """
    width, code_words = CODE_BITS * config.macs, list(code_words)
    return [sum(int(word) << (width * q) for q, word in enumerate(code_words[n:n + CODE_WORDS_PER_WORD]))
            for n in range(0, len(code_words), CODE_WORDS_PER_WORD)]


def split_code_words(words, config):
    """Inverse of :func:`join_code_words`: the :data:`CODE_WORDS_PER_WORD` code words of each memory word, in order."""
    width = CODE_BITS * config.macs
    mask = (1 << width) - 1
    return [(int(word) >> (width * q)) & mask for word in words for q in range(CODE_WORDS_PER_WORD)]


def weight_codes(weights, codebook):
    """Two-bit codes (int64, 0..3) of integer weights: the position of each weight in the ascending ``codebook``.

    Raises:
        ValueError: a weight that is not in the codebook.
    """
    weights, codebook = np.asarray(weights), np.asarray(codebook)
    codes = np.minimum(np.searchsorted(codebook, weights), len(codebook) - 1)
    if not np.array_equal(codebook[codes], weights):
        raise ValueError(f"a weight is not in the codebook {codebook.tolist()}")
    return codes.astype(np.int64)


def decode_code_words(words, codebook, config):
    """The engine's two-bit decoder: packed code words -> int8 weight words ``(len(words), lanes, lanes)``.

    Element ``(r, c)`` of word ``n`` is ``codebook[(words[n] >> 2*(r*lanes + c)) & 3]`` (:data:`CODE_BITS`): the
    lane order of the int8 weight words, two bits per lane instead of eight.
    """
    codes = unpack_words(words, CODE_BITS, config.macs, signed=False)
    return np.asarray(codebook, dtype=np.int64)[codes].astype(np.int8).reshape(len(words), config.lanes, config.lanes)
