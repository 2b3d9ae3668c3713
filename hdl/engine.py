"""The convolution engine: runs one layer descriptor from its memories on its own, ``start`` to ``done``.

``golden/engine.py`` is its model (``run_layer``), ``golden/sequencer.py`` its cycle count. Dataflow::

    Sequencer --step--> ActivationMemory (lanes banks) --+--> operands --> MACArray --words--> bias + k_c
        |                WeightMemory ------------------/      (x - zp, gated;            (BiasMemory)
        |                                                       weight rows)                   |
        +-- per-pass output addresses travel with the steps ------------------------------> Requantizer
                                                                                               |
                              ActivationMemory write port <-- int8 words <-- TableMemory (the layer's table, if any)

A residual add (``hdl/add.py``) takes the other path into the requantizer: its AddSequencer reads input 1's and input
2's word of a pixel in consecutive cycles (one bank, every bank given the address), the AddUnit rescales and sums
them, and the requantizer applies the output rescaling (channel shift 0)::

    AddSequencer --step--> ActivationMemory --word--> AddUnit --sum (+ output address)--> Requantizer --> table

Operands: row ``r`` of the MAC array multiplies the activation word of the bank ``step.act_bank[r]`` (minus the input
zero point, or 0 for a tap in the padding) by row ``step.weight_row[r]`` of the weight word; a global average pool
uses ``GAP_WEIGHT`` on the diagonal instead (``hdl/mac_array.py``, golden.pool), and a max pool (walked as a depthwise
layer) the MAC array's max mode. Result words get their bias and channel shifts from the bias memory (a pool or max
pool uses 0 and 0; a max pool's requantization is the identity, ``golden.pool.MAX_POOL_PARAMS``), go through the requantizer (``hdl/requant.py``) and the table stage (a
layer with the descriptor's ``table`` flag takes each lane's entry of its activation table, ``hdl.memory.TableMemory``;
the others pass the requantized word, delayed alike) and are written to the activation memory at the addresses the
sequencer computed for their pass.

Performance counters (reset by ``start``): ``cycles`` (cycles the engine was busy), ``active_cycles`` (cycles the MAC
array was given a step, or an add a word read) and ``mac_ops`` (MACs of the layer done, as ``LayerDescriptor.macs``
counts them).
The host port reads and writes activation words while the engine is idle (read data after 2 cycles; a write lands a
cycle after its strobe, through the engine's write stage, so a word written in cycle t reads back from t + 2); the load
ports fill the weight, bias and table memories, so one build runs any network whose images fit.
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.config import check_config
from golden.descriptor import KINDS
from golden.images import MemoryImages
from golden.layouts import CODE_BITS, TABLE_ENTRIES, address_bits
from hdl.add import AddSequencer, AddUnit
from hdl.fanout import kept_copies, registered_copies
from hdl.layouts import activation_word, bias_word, load_signature, weight_word
from hdl.mac_array import MACArray
from hdl.memory import ActivationMemory, BiasMemory, TableMemory, WeightMemory
from hdl.requant import Requantizer
from hdl.sequencer import Sequencer, descriptor_layout, pass_layout

__all__ = ["Engine", "host_signature", "COUNTER_BITS"]

#: Width of the performance counters.
COUNTER_BITS = 48


def host_signature(config):
    """The host's side of the activation memory port: word address, write strobe and data, read data."""
    return wiring.Signature({
        "bank": Out(unsigned(max(1, config.lane_bits))),
        "address": Out(unsigned(address_bits(config.act_depth))),
        "write": Out(1),
        "write_data": Out(activation_word(config)),
        "read_data": In(activation_word(config)),
    })


class Engine(wiring.Component):
    """One NPU convolution engine with its memories.

    Parameters
    ----------
    config : NPUConfig
        The hardware instance (``lanes`` at least 2).
    images : golden.images.MemoryImages or None
        Initial memory contents (build time); ``None`` for zeros.

    Members
    -------
    descriptor : ``In(descriptor_layout(config))``
        The layer (``golden.descriptor.encode_descriptor``); hold it stable until ``done``. With
        ``config.weight_code_bits == 2`` a layer with ``weight_format`` 1 has two-bit weights, decoded with the
        descriptor's codebook (docs/memory.md section 2a); the MACs of its input channels past ``in_channels`` (code 0
        decodes to ``codebook0``, not 0) get weight 0.
    start : ``In(1)``
        A cycle high while idle starts the layer.
    busy : ``Out(1)``
        The layer is running.
    done : ``Out(1)``
        High for one cycle when the layer's last output word has been written.
    cycles, active_cycles, mac_ops : ``Out(unsigned(COUNTER_BITS))``
        Performance counters of the last layer.
    host : ``In(host_signature(config))``
        Activation memory access while idle: read data 2 cycles after the address; a write lands a cycle after its
        strobe (the write stage's registers carry it), so a word written in cycle ``t`` reads back from ``t + 2`` on.
    weight_load, bias_load, table_load : ``In(hdl.layouts.load_signature(...))``
        Fill the weight, bias and table memories word by word (``golden.layouts`` word formats; a weight word holds
        int8 weights or four code words; a table word is one 8-bit entry); writes while busy are ignored.

    Attributes
    ----------
    fetch_latency, write_latency : int
        The pipeline around the MAC array. A layer's ``cycles`` are ``Sequencer.latency`` + the steps and bubbles
        issued + ``fetch_latency`` + the MAC array's latency of the last pass + ``write_latency``
        (``golden.sequencer.layer_cycles``, whose constants these are).
    add_write_latency : int
        An add's pipeline after the memory read: its ``cycles`` are ``AddSequencer.latency`` + 2 steps per output word
        + ``fetch_latency`` + ``add_write_latency``.
    """

    #: Result word to its pixel and group, then its write-back bank and address and its bias address (:meth:`_locate`).
    LOCATE_LATENCY = 2
    #: Bias added and channel shifts selected (:meth:`_bias_add`).
    BIAS_ADD_LATENCY = 1
    #: The word to write and its address copied beside each activation bank (:meth:`_write`).
    WRITE_STAGE_LATENCY = 1
    #: Cycles from a step leaving the sequencer to its operands at the MAC array (:meth:`_fetch`): the memories'
    #: read latency (``golden.sequencer.FETCH_LATENCY``).
    fetch_latency = max(ActivationMemory.latency, WeightMemory.latency)
    #: Cycles from a result word leaving the MAC array to its write: located, bias memory read (:meth:`_bias_read`),
    #: bias added, requantized (:meth:`_requantize`), table (:meth:`_table`), copied to its bank (:meth:`_write`)
    #: (``golden.sequencer.WRITE_LATENCY``).
    write_latency = (LOCATE_LATENCY + BiasMemory.latency + BIAS_ADD_LATENCY + Requantizer.latency
                     + TableMemory.latency + WRITE_STAGE_LATENCY)
    #: Cycles from an add's input-2 word leaving the activation memory to the write of its output word: add unit
    #: (bank select, rescaling, sum), requantizer, table, copied to its bank (``golden.sequencer.ADD_WRITE_LATENCY``).
    add_write_latency = AddUnit.latency + Requantizer.latency + TableMemory.latency + WRITE_STAGE_LATENCY

    def __init__(self, config, *, images=None):
        self._config = check_config(config)
        if config.lanes < 2:
            raise ValueError(f"the engine needs at least 2 lanes, not {config.lanes!r}")
        if images is not None and not isinstance(images, MemoryImages):
            raise TypeError(f"images must be a golden.images.MemoryImages, not {images!r}")
        self._images = images
        super().__init__({
            "descriptor": In(descriptor_layout(config)),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(unsigned(COUNTER_BITS)),
            "active_cycles": Out(unsigned(COUNTER_BITS)),
            "mac_ops": Out(unsigned(COUNTER_BITS)),
            "host": In(host_signature(config)),
            "weight_load": In(load_signature(address_bits(config.weight_depth), weight_word(config))),
            "bias_load": In(load_signature(address_bits(config.bias_depth), bias_word(config))),
            "table_load": In(load_signature(address_bits(config.table_depth * TABLE_ENTRIES), unsigned(8))),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        config = self._config
        images = self._images
        d = self.descriptor

        m.submodules.sequencer = seq = Sequencer(config)
        m.submodules.activations = act = ActivationMemory(
            config, init=None if images is None else images.activation)
        m.submodules.weights = weights = WeightMemory(config, init=None if images is None else images.weights)
        m.submodules.biases = biases = BiasMemory(
            config, bias=None if images is None else images.bias,
            channel_shift=None if images is None else images.channel_shift)
        m.submodules.mac_array = mac = MACArray(config, pass_layout(config))
        m.submodules.requantizer = requant = Requantizer(config)
        m.submodules.tables = tables = TableMemory(config, init=None if images is None else images.tables)
        m.submodules.add_sequencer = add_seq = AddSequencer(config)
        m.submodules.add_unit = add_unit = AddUnit(config, _target_layout(config))

        launch = self.start & ~self.busy
        starts_add = d.kind == KINDS["add"]
        m.d.comb += [seq.descriptor.eq(d), seq.start.eq(launch & ~starts_add),
                     add_seq.descriptor.eq(d), add_seq.start.eq(launch & starts_add)]
        # The datapath reads a registered copy of the descriptor, so that no path runs from the descriptor's source
        # (the controller's register, or the engine's port when synthesised alone) through the datapath's logic, and
        # the source's register drives the sequencers' latches alone. The descriptor is held stable from start until
        # done, and the datapath's first read of it (the first step's fetch) comes cycles after start.
        held = Signal(descriptor_layout(config), name="descriptor_held", reset_less=True)
        m.d.sync += held.eq(d)
        # Whether the layer is an add selects every bank's read address and every requantizer lane's input: one
        # registered copy of the flag per bank and lane (``hdl.fanout``), in step with ``held``.
        adding = registered_copies(m, d.kind == KINDS["add"], config.lanes, "adding")

        # The stages in dataflow order (the MAC array between fetch and locate). Each appends the valid flags of
        # its registers to `pending`: the engine is busy while a step or a word is in flight.
        pending = []
        addresses = self._fetch(m, held, seq, add_seq, adding, act, weights, mac, pending)  # fetch_latency
        self._add(m, held, add_seq, act, add_unit, pending)                              # fetch_latency
        located, valid = self._locate(m, mac, biases, pending)                           # LOCATE_LATENCY
        self._load_ports(m, weights, biases, tables)
        located, valid, pools = self._bias_read(m, located, valid, biases, pending)      # BiasMemory.latency
        biased, channel_shift, valid = self._bias_add(m, located, valid, pools, adding, biases,  # BIAS_ADD_LATENCY
                                                      pending)
        target, valid = self._requantize(m, held, requant, biased, channel_shift, valid,  # Requantizer.latency
                                         add_unit, adding, pending)
        result, target, valid = self._table(m, held, tables, requant, target, valid, pending)  # TableMemory.latency
        # busy's copies for the activation memory's ports: each bank's read address, and the write stage's input
        port_busy = kept_copies(self.busy, config.lanes + 1, "port_busy")
        self._write(m, act, result, target, valid, port_busy[-1], pending)                # WRITE_STAGE_LATENCY
        self._counters(m, launch, seq, add_seq, mac, add_unit, port_busy, pending)
        self._host_reads(m, act, addresses, port_busy[:-1])
        return m

    def _fetch(self, m, d, seq, add_seq, adding, act, weights, mac, pending):
        """Memories read at the step's addresses (an add step's address in every bank); the step's control waits
        :attr:`fetch_latency` cycles for the data.

        Drives the MAC array's inputs; returns each bank's read address (the activation ports select it while busy).
        """
        config = self._config
        lanes = config.lanes
        step = seq.step.payload
        addresses = [Mux(adding[bank], add_seq.step.payload.address, step.act_address[bank]) for bank in range(lanes)]
        m.d.comb += weights.address.eq(step.weight_address)

        # The step's control waits for the memories' data, less the MAC array's lead (it copies the selects while
        # the data is still in the memories' output registers); the MAC array's input, assigned in one piece.
        fetch_latency = self.fetch_latency
        stage, stage_valid = step, seq.step.valid
        for index in range(fetch_latency - mac.SELECT_LEAD):
            delayed = Signal(step.shape(), name=f"fetch{index}", reset_less=True)
            delayed_valid = Signal(name=f"fetch{index}_valid")
            m.d.sync += [delayed.eq(stage), delayed_valid.eq(stage_valid)]
            pending.append(delayed_valid)
            stage, stage_valid = delayed, delayed_valid
        control = Signal(mac.i.payload.shape(), name="fetch_control")
        m.d.comb += [
            control.word_select.eq(stage.act_bank), control.word_valid.eq(stage.act_valid),
            control.weight_select.eq(stage.weight_row), control.diagonal.eq(stage.out.pool),
            control.max.eq(stage.out.max),
            control.first.eq(stage.first), control.last.eq(stage.last), control.per_row.eq(stage.out.depthwise),
            control.meta.eq(stage.out),
        ]
        act_data = _delayed(m, act.read_data, fetch_latency - act.latency, "act_data")
        weight_data = _delayed(m, weights.data, fetch_latency - weights.latency, "weight_data")
        if config.weight_code_bits == CODE_BITS:
            m.d.comb += weights.two_bit.eq(d.weight_format)
            m.d.comb += [weights.codebook[code].eq(d[f"codebook{code}"]) for code in range(1 << CODE_BITS)]
            weight_data = _padding_columns_zeroed(m, config, d, seq.step, weight_data, fetch_latency)

        m.d.comb += [
            mac.i.valid.eq(stage_valid),
            mac.i.payload.eq(control),
            mac.words.eq(act_data),
            mac.weights.eq(weight_data),
            mac.zero_point.eq(d.input_zero_point),
        ]
        return addresses

    def _add(self, m, d, add_seq, act, add_unit, pending):
        """An add step's control waits :attr:`fetch_latency` cycles for its word; then the add unit takes it.

        Drives the add unit's inputs and parameters.
        """
        config = self._config
        step = add_seq.step.payload
        layout = data.StructLayout({"bank": unsigned(max(1, config.lane_bits)), "second": 1,
                                    "meta": _target_layout(config)})
        control = Signal(layout, name="add_fetch0", reset_less=True)
        control_valid = add_seq.step.valid
        m.d.comb += [control.bank.eq(step.bank), control.second.eq(step.second), control.meta.bank.eq(step.bank),
                     control.meta.address.eq(step.out_address)]
        # The bank and the input flag reach the add unit in one copy per lane, made in the last of the fetch stages.
        control, control_valid = _carried(m, control, control_valid, self.fetch_latency - 1, "add_fetch", pending)
        banks = registered_copies(m, control.bank, config.lanes, "add_bank")
        seconds = registered_copies(m, control.second, config.lanes, "add_second")
        control, control_valid = _carried(m, control, control_valid, 1, "add_fetch", pending, first=self.fetch_latency)
        m.d.comb += [
            add_unit.i.valid.eq(control_valid),
            add_unit.i.payload.words.eq(_delayed(m, act.read_data, self.fetch_latency - act.latency, "add_words")),
            *[add_unit.i.payload.banks[lane].eq(bank) for lane, bank in enumerate(banks)],
            *[add_unit.i.payload.seconds[lane].eq(second) for lane, second in enumerate(seconds)],
            add_unit.i.payload.meta.eq(control.meta),
            add_unit.params.zero_point1.eq(d.input_zero_point),
            add_unit.params.zero_point2.eq(d.input2_zero_point),
            add_unit.params.multiplier1.eq(d.multiplier1),
            add_unit.params.multiplier2.eq(d.multiplier2),
            add_unit.params.shift1.eq(d.shift1),
            add_unit.params.shift2.eq(d.shift2),
        ]

    def _locate(self, m, mac, biases, pending):
        """:attr:`LOCATE_LATENCY` cycles: each result word's pixel and group within its pass (registered beside the
        word, so that the route from the MAC array's drain counter ends at a flip-flop: at 2 lanes it ran through four
        logic levels to ``located``), then its write-back bank and address, and its bias word's address.

        Words of pixels beyond the output width (or of an absent second group) are dropped here. Returns
        ``(located, located_valid)``; the bias memory's data follows ``biases.latency`` cycles later.
        """
        config = self._config
        lane_bits = config.lane_bits
        result = mac.o.payload
        half_mask = max(1, config.lanes // 2) - 1
        # Data registers have no reset. The accumulators load every cycle (an enable would be one flag driving
        # lanes x 32 bits; the MAC array's output only changes around its words, so between words the requantizer's
        # inputs stay still, which an event-driven simulator turns into idle cycles); the rest only with a valid word.
        placed = Signal.like(result, name="placed", reset_less=True)
        placed_valid = Signal(name="placed_valid")
        pixel = Signal.like(result.word, name="placed_pixel", reset_less=True)
        second = Signal(name="placed_second", reset_less=True)
        m.d.sync += [placed_valid.eq(mac.o.valid), placed.acc.eq(result.acc)]
        with m.If(mac.o.valid):
            m.d.sync += [placed.meta.eq(result.meta),
                         pixel.eq(Mux(result.meta.stride2, result.word & half_mask, result.word)),
                         second.eq(result.meta.stride2 & result.word[-1])]
        meta = placed.meta
        located = Signal(_located_layout(config), name="located", reset_less=True)
        located_valid = Signal(name="located_valid")
        bias_address = Signal.like(biases.address, name="bias_address")
        m.d.sync += located_valid.eq(placed_valid & (pixel < meta.pixels) & (~second | meta.pair))
        m.d.sync += located.acc.eq(placed.acc)
        with m.If(placed_valid):
            m.d.sync += [
                located.bank.eq(meta.bank + pixel + second),
                located.address.eq(Mux(second, meta.address_next, meta.address)),
                located.pool.eq(meta.pool | meta.max),       # no bias, k_c 0
                bias_address.eq(meta.bias_address + second),
            ]
        m.d.comb += biases.address.eq(bias_address)
        pending.extend([placed_valid, located_valid])
        return located, located_valid

    def _load_ports(self, m, weights, biases, tables):
        """The weight, bias and table memories' write ports, from the load ports while idle."""
        for memory, load in ((weights, self.weight_load), (biases, self.bias_load), (tables, self.table_load)):
            m.d.comb += [memory.load.address.eq(load.address), memory.load.data.eq(load.data),
                         memory.load.write.eq(load.write & ~self.busy)]

    def _bias_read(self, m, located, located_valid, biases, pending):
        """``biases.latency`` cycles: the located word waits for its bias word.

        Returns the word, its valid flag and its pooling flag once per lane (copies for the bias add's lanes).
        """
        config = self._config
        layout = _located_layout(config)
        stage, stage_valid = located, located_valid
        for index in range(biases.latency):
            delayed = Signal(layout, name=f"biasing{index}", reset_less=True)
            delayed_valid = Signal(name=f"biasing{index}_valid")
            m.d.sync += [delayed_valid.eq(stage_valid), delayed.acc.eq(stage.acc), delayed.pool.eq(stage.pool)]
            with m.If(stage_valid):                                                  # as in _locate
                m.d.sync += [delayed.bank.eq(stage.bank), delayed.address.eq(stage.address)]
            pending.append(delayed_valid)
            previous, stage, stage_valid = stage, delayed, delayed_valid
        return stage, stage_valid, registered_copies(m, previous.pool, config.lanes, "biasing_pool")   # = stage.pool

    def _bias_add(self, m, word, word_valid, pools, adding, biases, pending):
        """:attr:`BIAS_ADD_LATENCY` cycle: bias added and channel shifts taken (a pool's are 0 and 0; ``pools``: the
        word's pooling flag, once per lane). The channel shifts are 0 throughout an add too (``adding``, per lane),
        which is the requantizer's channel shift for an add's sums: no selection in front of the requantizer.

        Returns ``(biased, channel_shift, biased_valid)``.
        """
        config = self._config
        lanes = config.lanes
        biased = Signal(_located_layout(config), name="biased", reset_less=True)
        biased_valid = Signal(name="biased_valid")
        channel_shift = Signal(data.ArrayLayout(unsigned(config.shift_bits), lanes), name="biased_shift",
                               reset_less=True)
        m.d.sync += biased_valid.eq(word_valid)
        with m.If(word_valid):                                                       # as in _locate
            m.d.sync += [biased.bank.eq(word.bank), biased.address.eq(word.address)]
        for c in range(lanes):
            m.d.sync += [
                biased.acc[c].eq(Mux(pools[c], word.acc[c],
                                     (word.acc[c] + biases.data.bias[c])[:config.acc_bits].as_signed())),
                channel_shift[c].eq(Mux(pools[c] | adding[c], 0, biases.data.channel_shift[c])),
            ]
        pending.append(biased_valid)
        return biased, channel_shift, biased_valid

    def _requantize(self, m, d, requant, biased, channel_shift, biased_valid, add_unit, adding, pending):
        """``Requantizer.latency`` cycles: the requantizer, with the word's write address travelling beside it.

        Its input is the biased MAC-array word, or for an add the add unit's sum with channel shift 0. Returns the
        write target (``bank``, ``address``) of the requantizer's output and its valid flag.
        """
        config = self._config
        summed = add_unit.o.payload
        for c in range(config.lanes):
            m.d.comb += [requant.i.payload.acc[c].eq(Mux(adding[c], summed.sum[c], biased.acc[c])),
                         requant.i.payload.channel_shift[c].eq(channel_shift[c])]
        m.d.comb += [
            requant.i.valid.eq(biased_valid | add_unit.o.valid),
            requant.o.ready.eq(1),
            requant.params.multiplier.eq(d.multiplier),
            requant.params.shift.eq(d.shift),
            requant.params.zero_point.eq(d.output_zero_point),
            requant.params.qmin.eq(d.qmin),
            requant.params.qmax.eq(d.qmax),
        ]
        target = _target_layout(config)
        where = Signal(target, name="requant_target0")
        # the descriptor's out_skew turns the output's banks (a slice of a concatenation, docs/memory.md section 1)
        m.d.comb += [where.bank.eq(Mux(adding[0], summed.meta.bank, biased.bank) + d.out_skew),
                     where.address.eq(Mux(adding[0], summed.meta.address, biased.address))]
        return _carried(m, where, requant.i.valid, requant.latency, "requant_target", pending)

    def _table(self, m, d, tables, requant, target, valid, pending):
        """``TableMemory.latency`` cycles: every lane's requantized value looked up in the layer's table (descriptor
        ``table_base``); the value itself, delayed alike, for a layer without the ``table`` flag.

        Returns the word to write, its target and valid flag.
        """
        m.d.comb += [tables.table.eq(d.table_base), tables.values.eq(requant.o.payload)]
        passed = _delayed(m, requant.o.payload, tables.latency, "untabled")
        result = Signal.like(passed, name="table_result")
        m.d.comb += result.eq(Mux(d.table, tables.data.as_value(), passed.as_value()))
        target, valid = _carried(m, target, valid, tables.latency, "table_target", pending)
        return result, target, valid

    def _write(self, m, act, result, target, valid, writing, pending):
        """:attr:`WRITE_STAGE_LATENCY` cycle: the word and its address copied into one register per bank, that
        bank's write enable beside them, so that the route from the table memory to the banks (spread over the die)
        ends at a flip-flop and no net carries the word to every bank (at 8 lanes the table's output to the banks'
        write data was the engine's critical path: 5.6 + 2.7 ns of routing). While idle (``writing``, a copy of
        ``busy``, low) the registers take the host's write instead: the host's word reaches one multiplexer, not one
        per bank. The enables join ``pending``.
        """
        lanes = self._config.lanes
        host = self.host
        word = Signal.like(result, name="write_word")
        address = Signal.like(target.address, name="write_word_address")
        m.d.comb += [word.eq(Mux(writing, result, host.write_data.as_value())),
                     address.eq(Mux(writing, target.address, host.address))]
        enables = [Signal(name=f"write_enable_{bank}") for bank in range(lanes)]
        m.d.sync += [enable.eq(Mux(writing, valid & (target.bank == bank), host.write & (host.bank == bank)))
                     for bank, enable in enumerate(enables)]
        pending.extend(enables)
        m.d.comb += [act.write_enable[bank].eq(enable) for bank, enable in enumerate(enables)]
        for bank, (copy, word_copy) in enumerate(zip(registered_copies(m, address, lanes, "write_address"),
                                                    registered_copies(m, word, lanes, "write_data"))):
            m.d.comb += [act.write_address[bank].eq(copy), act.write_data[bank].eq(word_copy)]

    def _host_reads(self, m, act, addresses, reading):
        """Each bank's read address: the engine's (``addresses``, from :meth:`_fetch`) while busy, the host's while
        idle, selected by the bank's own copy of ``busy`` (``reading``). Host read data: the bank's word,
        ``act.latency`` cycles after the address.
        """
        host = self.host
        for bank, address in enumerate(addresses):
            m.d.comb += act.read_address[bank].eq(Mux(reading[bank], address, host.address))
        host_bank = host.bank
        for index in range(act.latency):
            delayed = Signal.like(host_bank, name=f"host_bank{index}")
            m.d.sync += delayed.eq(host_bank)
            host_bank = delayed
        m.d.comb += host.read_data.eq(Array(act.read_data[bank] for bank in range(self._config.lanes))[host_bank])

    def _counters(self, m, launch, seq, add_seq, mac, add_unit, port_busy, pending):
        """``busy`` / ``done`` and the performance counters: busy until no step or word is in flight. ``port_busy``
        (``hdl.fanout.kept_copies`` of ``busy``, for the activation memory's port selections: at 8 lanes ``busy``
        itself drove some 300 multiplexer inputs) are assigned beside it."""
        active = seq.busy | mac.busy | add_seq.busy | add_unit.busy
        for valid in pending:
            active = active | valid
        m.d.sync += self.done.eq(0)
        # The counters restart a cycle after launch (no step is issued before the sequencers' latency), from a
        # register: launch, a gate behind the controller's state, stays off their hundred-odd flip-flops.
        launched = Signal(name="launched")
        m.d.sync += launched.eq(launch)
        # busy's copies are assigned beside it, not from an expression of its next value: in a four-valued simulator
        # an unknown `active` leaves busy as it is (if) but would make an expression's copy unknown.
        busy = [self.busy, *port_busy]
        with m.If(launch):
            m.d.sync += [copy.eq(1) for copy in busy]
        with m.Elif(self.busy & ~launched & ~active):
            m.d.sync += [*(copy.eq(0) for copy in busy), self.done.eq(1)]
        # apart from busy's chain, which launch heads (busy and launched are low in a launch cycle)
        with m.If(launched):
            m.d.sync += [self.cycles.eq(1), self.active_cycles.eq(0), self.mac_ops.eq(0)]
        with m.Elif(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(seq.step.valid | add_seq.step.valid):
                m.d.sync += self.active_cycles.eq(self.active_cycles + 1)
            with m.If(seq.step.valid):
                m.d.sync += self.mac_ops.eq(self.mac_ops + seq.step.payload.macs)


def _target_layout(config):
    """A result word's write-back place: bank and address."""
    return data.StructLayout({"bank": unsigned(max(1, config.lane_bits)),
                              "address": unsigned(address_bits(config.act_depth))})


def _located_layout(config):
    """A result word on its way to the requantizer: accumulators, write-back bank and address, pooling flag."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(config.acc_bits), config.lanes),
        "bank": unsigned(max(1, config.lane_bits)),
        "address": unsigned(address_bits(config.act_depth)),
        "pool": 1,
    })


def _carried(m, value, valid, cycles, name, pending, *, first=1):
    # `value` (a layout's view, no reset) and its valid flag delayed by `cycles` registers (numbered from `first`);
    # the flags join `pending`.
    for index in range(first, first + cycles):
        delayed = Signal(value.shape(), name=f"{name}{index}", reset_less=True)
        delayed_valid = Signal(name=f"{name}{index}_valid")
        m.d.sync += [delayed.eq(value), delayed_valid.eq(valid)]
        pending.append(delayed_valid)
        value, valid = delayed, delayed_valid
    return value, valid


def _delayed(m, value, cycles, name):
    # `value` delayed by `cycles` registers (0: itself).
    for index in range(cycles):
        delayed = Signal.like(value, name=f"{name}{index}")
        m.d.sync += delayed.eq(value)
        value = delayed
    return value


def _padding_columns_zeroed(m, config, d, step, weight_data, latency):
    # A two-bit layer (weight_format 1): the padding columns of a conv / fully connected layer's last input channel
    # group decode to codebook0, not 0 (docs/memory.md section 2a); int8 layers store 0 there and pass unmasked.
    # The steps of a pass walk (ky, kx, gi) with gi innermost, so a counter of the steps since the pass's first one
    # tells the last group; its column mask waits for the data.
    lanes, lane_bits = config.lanes, config.lane_bits
    last_group = (d.in_channels - 1) >> lane_bits
    gi = Signal.like(d.in_channels, name="code_gi")
    current = Mux(step.payload.first, 0, gi)
    with m.If(step.valid):
        m.d.sync += gi.eq(Mux(current == last_group, 0, current + 1))
    regular = ((d.kind == KINDS["conv"]) | (d.kind == KINDS["fully_connected"])) & d.weight_format
    columns = ((d.in_channels - 1) & (lanes - 1))
    mask = Signal(lanes, name="code_columns")
    for c in range(lanes):
        m.d.comb += mask[c].eq(~regular | (current != last_group) | (c <= columns))
    mask = _delayed(m, mask, latency, "code_columns")
    masked = Signal.like(weight_data, name="weight_data_masked")
    for r in range(lanes):
        for c in range(lanes):
            m.d.comb += masked[r][c].eq(Mux(mask[c], weight_data[r][c], 0))
    return masked
