"""The engine's on-chip memories: banked activations, weights, biases with channel shifts, activation tables
(docs/memory.md).

Each reads through :class:`hdl.bram.BlockRAM` (DP16KD primitives with their output registers on ECP5, a memory with
non-transparent read ports and a register elsewhere), so no combinational path leaves a RAM's array: read data
appears :attr:`latency` cycles after the address. Contents come from ``golden.images`` images at build time, or are
loaded word by word through the write ports (the engine's host and load ports).
"""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.config import check_config
from golden.descriptor import weight_address_bits
from golden.layouts import CODE_BITS, CODE_WORDS_PER_WORD, TABLE_ENTRIES, address_bits, pack_bias_words, pack_words
from hdl.bram import BlockRAM
from hdl.layouts import activation_word, bias_word, codebook_layout, load_signature, weight_word
from hdl.weight_decoder import WeightDecoder

__all__ = ["ActivationMemory", "WeightMemory", "BiasMemory", "TableMemory"]


def _check_image(image, shape, name):
    if image is None:
        return None
    image = np.asarray(image)
    if image.shape != shape or not np.issubdtype(image.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array of shape {shape}, not {image.dtype} {image.shape}")
    return image


class ActivationMemory(wiring.Component):
    """``lanes`` banks of ``act_depth`` activation words; every bank read and written each cycle.

    Parameters
    ----------
    config : NPUConfig
    init : numpy.ndarray or None
        int8 ``(lanes, act_depth, lanes)`` (``golden.images.MemoryImages.activation``).

    Members
    -------
    read_address : ``In(ArrayLayout(unsigned(A), lanes))``
        Address of each bank.
    read_data : ``Out(ArrayLayout(activation_word, lanes))``
        Each bank's word, :attr:`latency` cycles after its address.
    write_enable, write_address, write_data : ``In(ArrayLayout(..., lanes))``
        Each bank's write port (the engine writes one bank a cycle, from a copy of its word and address beside each
        bank, so that no net carries a word to every bank).
    """

    latency = BlockRAM.LATENCY

    def __init__(self, config, *, init=None):
        self._config = check_config(config)
        self._init = _check_image(init, (config.lanes, config.act_depth, config.lanes), "init")
        lanes, bits = config.lanes, address_bits(config.act_depth)
        super().__init__({
            "read_address": In(data.ArrayLayout(unsigned(bits), lanes)),
            "read_data": Out(data.ArrayLayout(activation_word(config), lanes)),
            "write_enable": In(data.ArrayLayout(1, lanes)),
            "write_address": In(data.ArrayLayout(unsigned(bits), lanes)),
            "write_data": In(data.ArrayLayout(activation_word(config), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        outputs = []
        for bank in range(config.lanes):
            init = [] if self._init is None else _trimmed(pack_words(self._init[bank], 8))
            m.submodules[f"bank{bank}"] = ram = BlockRAM(unsigned(config.lanes * 8), config.act_depth, init=init)
            m.d.comb += [
                ram.write.address.eq(self.write_address[bank]),
                ram.write.data.eq(self.write_data[bank].as_value()),
                ram.write.write.eq(self.write_enable[bank]),
                ram.read_address[0].eq(self.read_address[bank]),
            ]
            outputs.append(ram.read_data[0])
        m.d.comb += self.read_data.eq(Cat(*outputs))
        return m


class WeightMemory(wiring.Component):
    """The weight memory: one ``lanes x lanes`` int8 word per cycle.

    This is the seam for other weight encodings: the memory offers ``address`` / ``data`` and its :attr:`latency`,
    whatever it stores; the engine aligns the activations to it. Its RAM holds ``weight_depth`` words of
    ``8 lanes**2`` bits. With ``config.weight_code_bits == 2`` it also decodes two-bit layers (docs/memory.md section
    2a): while ``two_bit`` is high, ``address`` counts code words, the RAM reads word ``address >> 2``, a multiplexer
    takes its quarter ``address mod 4`` and a :class:`hdl.weight_decoder.WeightDecoder` turns it into an int8 word
    with ``codebook``, after the RAM's output register (same latency as an int8 read; on ECP5 this multiplexer and
    decoder are the logic between the DP16KD output registers and the weights' reader).

    Parameters
    ----------
    config : NPUConfig
    init : numpy.ndarray or None
        int8 ``(weight_depth, lanes, lanes)``: the words' bits (``golden.images.MemoryImages.weights``: int8 words,
        and code words four to a word).

    Members
    -------
    address : ``In(unsigned(golden.descriptor.weight_address_bits(config)))``
        Read address: an int8 word, or while ``two_bit`` a code word.
    data : ``Out(hdl.layouts.weight_word(config))``
        The int8 word, :attr:`latency` cycles after its address.
    two_bit, codebook : ``In(1)``, ``In(hdl.layouts.codebook_layout())``
        Only with two-bit codes: the running layer's ``weight_format`` and its four int8 weights; hold them stable
        while it runs.
    load : ``In(hdl.layouts.load_signature(...))``
        Write port, to load a network's weight words.
    """

    latency = BlockRAM.LATENCY

    def __init__(self, config, *, init=None):
        self._config = check_config(config)
        self._init = _check_image(init, (config.weight_depth, config.lanes, config.lanes), "init")
        members = {
            "address": In(unsigned(weight_address_bits(config))),
            "data": Out(weight_word(config)),
            "load": In(load_signature(address_bits(config.weight_depth), weight_word(config))),
        }
        if config.weight_code_bits == CODE_BITS:
            members["two_bit"] = In(1)
            members["codebook"] = In(codebook_layout())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config = self._config
        init = [] if self._init is None else _trimmed(pack_words(self._init.reshape(config.weight_depth, -1), 8))
        m.submodules.ram = ram = BlockRAM(weight_word(config), config.weight_depth, init=init)
        wiring.connect(m, wiring.flipped(self.load), ram.write)
        if config.weight_code_bits != CODE_BITS:
            m.d.comb += [ram.read_address[0].eq(self.address), self.data.eq(ram.read_data[0])]
            return m
        m.submodules.decoder = decoder = WeightDecoder(config)
        quarter_bits = CODE_WORDS_PER_WORD.bit_length() - 1
        m.d.comb += ram.read_address[0].eq(Mux(self.two_bit, self.address[quarter_bits:], self.address))
        # The quarter of the word read, delayed as the read.
        quarter = self.address[:quarter_bits]
        for stage in range(ram.LATENCY):
            delayed = Signal(quarter_bits, name=f"weights_quarter{stage + 1}", reset_less=True)
            m.d.sync += delayed.eq(quarter)
            quarter = delayed
        word = ram.read_data[0].as_value()
        m.d.comb += [decoder.codes.eq(word.word_select(quarter, CODE_BITS * config.macs)),
                     decoder.codebook.eq(self.codebook),
                     self.data.eq(Mux(self.two_bit, decoder.weights.as_value(), word))]
        return m


class BiasMemory(wiring.Component):
    """The bias memory: per channel group ``lanes`` int32 biases and their WESS shifts k_c.

    Parameters
    ----------
    config : NPUConfig
    bias, channel_shift : numpy.ndarray or None
        ``(bias_depth, lanes)`` (``golden.images.MemoryImages.bias`` / ``.channel_shift``); both or neither.

    Members
    -------
    address : ``In(unsigned)``, data : ``Out(hdl.layouts.bias_word(config))``
        Read port: ``data`` follows ``address`` by :attr:`latency` cycles.
    load : ``In(hdl.layouts.load_signature(...))``
        Write port, to load a network's biases and shifts.
    """

    latency = BlockRAM.LATENCY

    def __init__(self, config, *, bias=None, channel_shift=None):
        self._config = check_config(config)
        shape = (config.bias_depth, config.lanes)
        self._bias = _check_image(bias, shape, "bias")
        self._channel_shift = _check_image(channel_shift, shape, "channel_shift")
        if (self._bias is None) != (self._channel_shift is None):
            raise ValueError("bias and channel_shift must be given together")
        bits = address_bits(config.bias_depth)
        super().__init__({
            "address": In(unsigned(bits)),
            "data": Out(bias_word(config)),
            "load": In(load_signature(bits, bias_word(config))),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        init = []
        if self._bias is not None:
            init = _trimmed(pack_bias_words(self._bias, self._channel_shift, config))
        m.submodules.ram = ram = BlockRAM(bias_word(config), config.bias_depth, init=init)
        wiring.connect(m, wiring.flipped(self.load), ram.write)
        m.d.comb += [ram.read_address[0].eq(self.address), self.data.eq(ram.read_data[0])]
        return m


class TableMemory(wiring.Component):
    """The activation table memory: ``table_depth`` tables of 256 int8 entries, one lookup per lane each cycle.

    One memory of ``table_depth * 256`` 8-bit entries with ``lanes`` read ports (docs/memory.md section 3a): lane
    ``c`` reads entry ``256 * table + (value + 128)``. The cost: a memory with ``lanes`` read ports is built as
    ``lanes`` copies, one per read port (:class:`hdl.bram.BlockRAM`). On ECP5 a copy of the default 16 tables (4,096
    bytes) is 2 DP16KD (4096x4 each), and a copy of a single table still one DP16KD.

    Parameters
    ----------
    config : NPUConfig
    init : numpy.ndarray or None
        int8 ``(table_depth, 256)`` (``golden.images.MemoryImages.tables``).

    Members
    -------
    table : ``In(unsigned)``
        The running layer's table (``table_base``); hold it stable while it runs.
    values : ``In(ArrayLayout(signed(8), lanes))``
        The values to look up, one per lane.
    data : ``Out(ArrayLayout(signed(8), lanes))``
        Their entries, :attr:`latency` cycles later.
    load : ``In(hdl.layouts.load_signature(...))``
        Write port (entry addresses), to load a network's tables.
    """

    latency = BlockRAM.LATENCY

    def __init__(self, config, *, init=None):
        self._config = check_config(config)
        self._init = _check_image(init, (config.table_depth, TABLE_ENTRIES), "init")
        super().__init__({
            "table": In(unsigned(address_bits(config.table_depth))),
            "values": In(activation_word(config)),
            "data": Out(activation_word(config)),
            "load": In(load_signature(address_bits(config.table_depth * TABLE_ENTRIES), unsigned(8))),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        init = [] if self._init is None else _trimmed(pack_words(self._init.reshape(-1, 1), 8))
        m.submodules.ram = ram = BlockRAM(unsigned(8), config.table_depth * TABLE_ENTRIES, read_ports=config.lanes,
                                          init=init)
        wiring.connect(m, wiring.flipped(self.load), ram.write)
        for lane in range(config.lanes):
            value = self.values[lane]
            # entry value + 128: the value's bits with the sign bit inverted
            m.d.comb += [ram.read_address[lane].eq(Cat(value[:7], ~value[7], self.table)),
                         self.data[lane].eq(ram.read_data[lane])]
        return m


def _trimmed(words):
    # Trailing zero words need no init (smaller Verilog: one line per initialised word).
    end = len(words)
    while end and not words[end - 1]:
        end -= 1
    return words[:end]
