"""The engine's on-chip memories: banked activations, weights, biases with channel shifts, activation tables
(docs/memory.md).

Each wraps :class:`amaranth.lib.memory.Memory` with non-transparent synchronous read ports (what ECP5 block RAM
has) followed by an output register, so no combinational path leaves a RAM: read data appears
:attr:`latency` cycles after the address. Contents come from ``golden.images`` images at build time, or are loaded
word by word through the write ports (the engine's host and load ports).
"""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from golden.config import check_config
from golden.descriptor import weight_address_bits
from golden.layouts import CODE_BITS, CODE_WORDS_PER_WORD, TABLE_ENTRIES, address_bits, pack_bias_words, pack_words
from hdl.layouts import activation_word, bias_word, codebook_layout, load_signature, weight_word
from hdl.weight_decoder import WeightDecoder

__all__ = ["ActivationMemory", "WeightMemory", "BiasMemory", "TableMemory", "registered_read"]


def _check_image(image, shape, name):
    if image is None:
        return None
    image = np.asarray(image)
    if image.shape != shape or not np.issubdtype(image.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array of shape {shape}, not {image.dtype} {image.shape}")
    return image


def registered_read(m, mem, address, name):
    """``mem``'s data at ``address`` through a non-transparent read port and a register: two cycles after the address
    (every memory of the NPU reads this way; the register is named ``<name>_q``)."""
    port = mem.read_port(transparent_for=())
    m.d.comb += port.addr.eq(address)
    out = Signal.like(port.data, name=f"{name}_q")
    m.d.sync += out.eq(port.data)
    return out


class ActivationMemory(wiring.Component):
    """``lanes`` banks of ``act_depth`` activation words; every bank read each cycle, one word written.

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
    write_enable, write_bank, write_address, write_data : ``In``
        One word written per cycle.
    """

    latency = 2

    def __init__(self, config, *, init=None):
        self._config = check_config(config)
        self._init = _check_image(init, (config.lanes, config.act_depth, config.lanes), "init")
        lanes, bits = config.lanes, address_bits(config.act_depth)
        super().__init__({
            "read_address": In(data.ArrayLayout(unsigned(bits), lanes)),
            "read_data": Out(data.ArrayLayout(activation_word(config), lanes)),
            "write_enable": In(1),
            "write_bank": In(unsigned(max(1, config.lane_bits))),
            "write_address": In(unsigned(bits)),
            "write_data": In(activation_word(config)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        width = config.lanes * 8
        outputs = []
        for bank in range(config.lanes):
            init = [] if self._init is None else _trimmed(pack_words(self._init[bank], 8))
            mem = memory.Memory(shape=unsigned(width), depth=config.act_depth, init=init)
            m.submodules[f"bank{bank}"] = mem
            write = mem.write_port()
            m.d.comb += [
                write.addr.eq(self.write_address),
                write.data.eq(self.write_data.as_value()),
                write.en.eq(self.write_enable & (self.write_bank == bank)),
            ]
            port = mem.read_port(transparent_for=())
            m.d.comb += port.addr.eq(self.read_address[bank])
            outputs.append(port.data)
        # All banks' output registers as one register: a vector assigned in one piece changes once per cycle, which
        # keeps event-driven simulators (Icarus) from re-evaluating its readers once per bank.
        out = Signal(width * config.lanes, name="read_data_q", reset_less=True)
        m.d.sync += out.eq(Cat(*outputs))
        m.d.comb += self.read_data.eq(out)
        return m


class WeightMemory(wiring.Component):
    """The weight memory: one ``lanes x lanes`` int8 word per cycle.

    This is the seam for other weight encodings: the memory offers ``address`` / ``data`` and its :attr:`latency`,
    whatever it stores; the engine aligns the activations to it. Its RAM holds ``weight_depth`` words of
    ``8 lanes**2`` bits. With ``config.weight_code_bits == 2`` it also decodes two-bit layers (docs/memory.md section
    2a): while ``two_bit`` is high, ``address`` counts code words, the RAM reads word ``address >> 2``, a multiplexer
    takes its quarter ``address mod 4`` and a :class:`hdl.weight_decoder.WeightDecoder` turns it into an int8 word
    with ``codebook``, between the RAM read port and the output register (same latency as an int8 read).

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

    latency = 2

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
        mem = memory.Memory(shape=unsigned(config.macs * 8), depth=config.weight_depth, init=init)
        m.submodules.mem = mem
        _load(m, mem, self.load)
        if config.weight_code_bits != CODE_BITS:
            m.d.comb += self.data.eq(registered_read(m, mem, self.address, "weights"))
            return m
        m.submodules.decoder = decoder = WeightDecoder(config)
        quarter_bits = CODE_WORDS_PER_WORD.bit_length() - 1
        port = mem.read_port(transparent_for=())
        quarter = Signal(quarter_bits, name="weights_quarter")
        m.d.comb += port.addr.eq(Mux(self.two_bit, self.address[quarter_bits:], self.address))
        m.d.sync += quarter.eq(self.address[:quarter_bits])
        out = Signal(weight_word(config), name="weights_q")
        m.d.comb += [decoder.codes.eq(port.data.word_select(quarter, CODE_BITS * config.macs)),
                     decoder.codebook.eq(self.codebook)]
        m.d.sync += out.eq(Mux(self.two_bit, decoder.weights.as_value(), port.data))
        m.d.comb += self.data.eq(out)
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

    latency = 2

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
        mem = memory.Memory(shape=unsigned(data.Layout.cast(bias_word(config)).size), depth=config.bias_depth,
                            init=init)
        m.submodules.mem = mem
        _load(m, mem, self.load)
        m.d.comb += self.data.eq(registered_read(m, mem, self.address, "bias"))
        return m


class TableMemory(wiring.Component):
    """The activation table memory: ``table_depth`` tables of 256 int8 entries, one lookup per lane each cycle.

    One memory of ``table_depth * 256`` 8-bit entries with ``lanes`` read ports (docs/memory.md section 3a): lane
    ``c`` reads entry ``256 * table + (value + 128)``. The cost: a memory with ``lanes`` read ports is built as copies,
    ``lanes`` at most (one per read port; ``lanes / 2`` where two read ports share a true dual-port block RAM). On
    ECP5 a copy of the default 16 tables (4,096 bytes) is 2 EBRs; with ``table_depth`` 1 a copy is 256 bytes, small
    enough for distributed RAM.

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

    latency = 2

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
        mem = memory.Memory(shape=unsigned(8), depth=config.table_depth * TABLE_ENTRIES, init=init)
        m.submodules.mem = mem
        _load(m, mem, self.load)
        for lane in range(config.lanes):
            value = self.values[lane]
            # entry value + 128: the value's bits with the sign bit inverted
            address = Cat(value[:7], ~value[7], self.table)
            m.d.comb += self.data[lane].eq(registered_read(m, mem, address, f"table{lane}"))
        return m


def _load(m, mem, load):
    # The memory's write port, driven by a load port.
    port = mem.write_port()
    m.d.comb += [port.addr.eq(load.address), port.data.eq(Value.cast(load.data)), port.en.eq(load.write)]


def _trimmed(words):
    # Trailing zero words need no init (smaller Verilog: one line per initialised word).
    end = len(words)
    while end and not words[end - 1]:
        end -= 1
    return words[:end]
