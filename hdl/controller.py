"""The NPU: the convolution engine and the layer controller that runs a whole program of descriptors per ``start``.

``golden/controller.py`` is its model (checks, ``run_program``, ``program_cycles``). States, per layer ``i`` of
``0 .. layer_count - 1``::

    IDLE --start--> FETCH (descriptor i read, DESCRIPTOR_LATENCY) --> CHECK (CHECK_LATENCY) --> LAUNCH --+
                      ^                                                       (a check failed: error, done, IDLE)
                      |                                                                                  v
                      +---- i + 1 <---- (step: PAUSED until resume) <---- RUN (engine busy; its done: counters
                                                                               stored at address i; last layer: done)

The checks (``golden.controller.CHECKS``, in that priority) refuse every descriptor that would make the sequencer
loop for ever or write outside the activation memory: ``layer_count`` 0 or above ``program_depth``, kind codes
outside ``KINDS``, zero sizes, strides outside 1..2, padding not below the kernel, output sizes that do not follow
from the input, channel and window rules of depthwise / fully connected / pool / add layers, row pitches below the
minimum, tensor regions beyond ``act_depth`` (height x row pitch in a registered MULT18X18D) and bias words beyond
``bias_depth``. Left to ``golden.descriptor.check_descriptor`` (they cannot hang the engine or write outside its
memories): weight bounds (reads only), overlapping regions, requantization and codebook fields.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.config import check_config
from golden.controller import CHECKS
from golden.descriptor import KINDS, descriptor_fields
from golden.layouts import address_bits
from hdl.bram import BlockRAM
from hdl.dsp import PRODUCT_LATENCY, registered_product
from hdl.engine import COUNTER_BITS, Engine, host_signature
from hdl.sequencer import descriptor_layout

__all__ = ["Controller", "counter_layout"]


def counter_layout():
    """One layer's stored performance counters (``hdl.engine.Engine``'s, at the layer's ``done``)."""
    return data.StructLayout({name: unsigned(COUNTER_BITS) for name in ("cycles", "active_cycles", "mac_ops")})


class Controller(wiring.Component):
    """The NPU top: an :class:`hdl.engine.Engine` run layer after layer from a descriptor memory.

    Parameters
    ----------
    config : NPUConfig
        The hardware instance; ``program_depth`` words of descriptor memory.
    images : golden.images.MemoryImages or None
        The engine's initial memories (build time); ``None`` for zeros.
    descriptors : list of int or None
        The descriptor memory's initial words (``golden.descriptor.encode_descriptor``); ``None`` for zeros.

    Members
    -------
    start : ``In(1)``
        A cycle high while idle runs layers ``0 .. layer_count - 1`` and clears ``error``.
    layer_count : ``In(unsigned)``
        Layers to run; hold it stable until ``done``.
    step, resume : ``In(1)``
        With ``step`` high the controller pauses after each layer but the last (``paused`` high) until a cycle of
        ``resume``: the host port then reads that layer's output. Paused cycles are not counted.
    busy, done, paused : ``Out(1)``
        A program is running (paused included); one cycle after its last layer or an error; waiting for ``resume``.
    layer : ``Out(unsigned)``
        The layer running (or just run, while paused).
    error, error_layer, error_check : ``Out``
        A check failed (sticky until the next ``start``), at which layer, and which (index into
        ``golden.controller.CHECKS``).
    cycles : ``Out(unsigned(COUNTER_BITS))``
        Cycles of the last run, paused ones excluded (``golden.controller.program_cycles``).
    counter_address : ``In(unsigned)``, counter_data : ``Out(counter_layout())``
        The counters stored for a layer, :attr:`COUNTER_LATENCY` cycles after its address.
    descriptor_load : ``In(hdl.layouts.load_signature(...))``
        Writes descriptor memory words while idle.
    host, weight_load, bias_load, table_load : ``In``
        The engine's ports (``hdl.engine.Engine``), passed through.

    Attributes
    ----------
    LAYER_OVERHEAD : int
        Cycles a layer costs beyond the engine's: the descriptor read, the checks, the launch and the store
        (``golden.controller.LAYER_OVERHEAD``, whose constants these are).
    """

    #: Cycles from a layer's index to its descriptor: the descriptor memory's read, then its word copied into a
    #: fabric register that the checks and the engine read.
    DESCRIPTOR_LATENCY = BlockRAM.LATENCY + 1
    #: Cycles of the checks (:meth:`_checks`): flags and operands registered, the products (with their fabric
    #: copies), the region comparisons, the verdict.
    CHECK_LATENCY = 1 + PRODUCT_LATENCY + 2
    #: The cycle in which the engine's ``start`` is high.
    LAUNCH_LATENCY = 1
    #: The cycle of the engine's ``done``: the layer's counters are written.
    STORE_LATENCY = 1
    LAYER_OVERHEAD = DESCRIPTOR_LATENCY + CHECK_LATENCY + LAUNCH_LATENCY + STORE_LATENCY
    #: Cycles from ``counter_address`` to ``counter_data`` (the counter memory's read).
    COUNTER_LATENCY = BlockRAM.LATENCY

    def __init__(self, config, *, images=None, descriptors=None):
        self._config = check_config(config)
        depth = config.program_depth
        width = sum(width for _, width, _ in descriptor_fields(config))
        descriptors = [] if descriptors is None else [int(word) for word in descriptors]
        if len(descriptors) > depth:
            raise ValueError(f"{len(descriptors)} descriptors exceed program_depth {depth}")
        if any(not 0 <= word < 1 << width for word in descriptors):
            raise ValueError(f"descriptors must be {width}-bit words")
        self._descriptors = descriptors
        self._engine = Engine(config, images=images)
        bits = address_bits(depth)
        engine_ports = self._engine.signature.members
        super().__init__({
            "start": In(1),
            "layer_count": In(unsigned(depth.bit_length())),
            "step": In(1),
            "resume": In(1),
            "busy": Out(1),
            "done": Out(1),
            "paused": Out(1),
            "layer": Out(unsigned(bits)),
            "error": Out(1),
            "error_layer": Out(unsigned(bits)),
            "error_check": Out(range(len(CHECKS))),
            "cycles": Out(unsigned(COUNTER_BITS)),
            "counter_address": In(unsigned(bits)),
            "counter_data": Out(counter_layout()),
            "descriptor_load": In(wiring.Signature({"address": Out(unsigned(bits)), "data": Out(unsigned(width)),
                                                    "write": Out(1)})),
            "host": In(host_signature(config)),
            "weight_load": engine_ports["weight_load"],
            "bias_load": engine_ports["bias_load"],
            "table_load": engine_ports["table_load"],
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        config = self._config
        depth = config.program_depth
        m.submodules.engine = engine = self._engine
        for name in ("host", "weight_load", "bias_load", "table_load"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(engine, name))

        width = sum(width for _, width, _ in descriptor_fields(config))
        m.submodules.descriptors = program = BlockRAM(unsigned(width), depth, init=self._descriptors)
        m.submodules.counters = counters = BlockRAM(counter_layout(), depth)
        m.d.comb += [program.write.address.eq(self.descriptor_load.address),
                     program.write.data.eq(self.descriptor_load.data),
                     program.write.write.eq(self.descriptor_load.write & ~self.busy),
                     program.read_address[0].eq(self.layer)]
        # The descriptor word copied out of the block RAM into one register, which the checks and the engine read:
        # no path runs from the RAM's output (routed out of the RAM row) into logic (at 2 lanes the RAM -> the kind's
        # decode -> the sequencers' start -> busy's copies was a critical path, 6.49 ns). The layer index stays stable
        # from FETCH, the word from CHECK, to the engine's done.
        d = Signal(descriptor_layout(config), name="descriptor", reset_less=True)
        m.d.sync += d.eq(program.read_data[0])
        m.d.comb += engine.descriptor.eq(d)
        m.d.comb += [counters.read_address[0].eq(self.counter_address), self.counter_data.eq(counters.read_data[0])]
        store = counters.write
        m.d.comb += [store.address.eq(self.layer), store.data.cycles.eq(engine.cycles),
                     store.data.active_cycles.eq(engine.active_cycles), store.data.mac_ops.eq(engine.mac_ops)]

        failed, failed_check = self._checks(m, d)
        # High in the LAUNCH state: the engine's start from this register and the checks' verdict, not from a decode
        # of the FSM's state (at 2 lanes the state's decode -> start -> the sequencer's busy copies took 5 levels).
        launching = Signal(name="launching")
        m.d.comb += engine.start.eq(launching & ~failed)
        wait = Signal(range(max(self.DESCRIPTOR_LATENCY, self.CHECK_LATENCY)))
        # Whether the layer is the program's last, registered (read only at the engine's done, cycles after the layer
        # index changes): the subtraction and comparison before the FSM's next state were a 2-lane critical path.
        last = Signal(name="last_layer")
        m.d.sync += last.eq(self.layer == self.layer_count - 1)
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.error.eq(0), self.layer.eq(0), self.cycles.eq(0), wait.eq(0)]
                    with m.If((self.layer_count == 0) | (self.layer_count > depth)):
                        m.d.sync += [self.error.eq(1), self.error_layer.eq(0),
                                     self.error_check.eq(CHECKS.index("layer_count")), self.done.eq(1)]
                    with m.Else():
                        m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [self.cycles.eq(self.cycles + 1), wait.eq(wait + 1)]
                with m.If(wait == self.DESCRIPTOR_LATENCY - 1):
                    m.d.sync += wait.eq(0)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [self.cycles.eq(self.cycles + 1), wait.eq(wait + 1)]
                with m.If(wait == self.CHECK_LATENCY - 1):
                    m.d.sync += [wait.eq(0), launching.eq(1)]
                    m.next = "LAUNCH"
            with m.State("LAUNCH"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [self.cycles.eq(self.cycles + 1), launching.eq(0)]
                with m.If(failed):
                    m.d.sync += [self.error.eq(1), self.error_layer.eq(self.layer), self.error_check.eq(failed_check),
                                 self.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(engine.done):
                    m.d.comb += store.write.eq(1)
                    with m.If(last):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Elif(self.step):
                        m.next = "PAUSED"
                    with m.Else():
                        m.d.sync += self.layer.eq(self.layer + 1)
                        m.next = "FETCH"
            with m.State("PAUSED"):
                m.d.comb += [self.busy.eq(1), self.paused.eq(1)]
                with m.If(self.resume):
                    m.d.sync += self.layer.eq(self.layer + 1)
                    m.next = "FETCH"
        return m

    def _checks(self, m, d):
        """The descriptor checks over :attr:`CHECK_LATENCY` cycles, from the descriptor's register: each flag (the
        output size's sums a cycle ahead of its comparisons) and the region products' operands registered, the flags'
        first failure registered beside the products in registered MULT18X18D copied into fabric registers
        (``hdl.dsp.registered_product``), each region comparison registered, then the first failing check of
        ``golden.controller.CHECKS`` (order of priority). Returns ``(failed, failed_check)``, valid in the cycle after
        the last stage."""
        config = self._config
        lane_bits, lanes = config.lane_bits, config.lanes

        # Stage 1: each flag registered but the output size's, whose sums are registered first (it is checked in
        # stage 2); the region products' operands registered (the group counts are carry chains) with the room left
        # above each region's base, the bias words' end registered.
        kind = {name: d.kind == code for name, code in KINDS.items()}
        is_add = kind["add"]
        flags = {
            "kind": d.kind >= len(KINDS),
            "size": 0,
            "stride": 0,
            "padding": (d.pad_top >= d.kernel_height) | (d.pad_left >= d.kernel_width),
            "channels": (kind["depthwise"] | kind["average_pool"] | is_add | kind["max_pool"])
                        & (d.in_channels != d.out_channels),
            "window": ((kind["fully_connected"] | kind["average_pool"])
                       & ((d.kernel_height != d.in_height) | (d.kernel_width != d.in_width)
                          | (d.stride_height != 1) | (d.stride_width != 1)))
                      | (is_add & ((d.kernel_height != 1) | (d.kernel_width != 1) | (d.stride_height != 1)
                                   | (d.stride_width != 1) | (d.pad_top != 0) | (d.pad_left != 0))),
        }
        for name in ("in_height", "in_width", "in_channels", "out_height", "out_width", "out_channels",
                     "kernel_height", "kernel_width"):
            flags["size"] = flags["size"] | (d[name] == 0)
        output_size = 0
        for axis, (size, kernel, stride, before, out) in enumerate((
                (d.in_height, d.kernel_height, d.stride_height, d.pad_top, d.out_height),
                (d.in_width, d.kernel_width, d.stride_width, d.pad_left, d.out_width))):
            flags["stride"] = flags["stride"] | (stride == 0) | (stride == 3)
            # After-padding (out - 1) * stride + kernel - size - before in [0, kernel), without subtractions:
            # out * stride < stride + size + before <= out * stride + kernel.
            span = Mux(stride == 2, out << 1, out)
            sums = {"span": span, "reach": stride + size + before, "limit": span + kernel}
            term = {name: Signal.like(value, name=f"check_{name}{axis}") for name, value in sums.items()}
            m.d.sync += [term[name].eq(value) for name, value in sums.items()]
            output_size = output_size | (term["span"] >= term["reach"]) | (term["reach"] > term["limit"])
        flagged = {name: Signal(name=f"check_{name}") for name in flags}
        m.d.sync += [flagged[name].eq(flag) for name, flag in flags.items()]
        regions = []
        for label, base, pitch, height, width, channels in (
                ("in", d.in_base, d.in_row_pitch, d.in_height, d.in_width, d.in_channels),
                ("out", d.out_base, d.out_row_pitch, d.out_height, d.out_width, d.out_channels),
                ("in2", d.in2_base, d.in2_row_pitch, d.in_height, d.in_width, d.in_channels)):
            pitch_2, height_2 = (Signal.like(value, name=f"check_{label}_{name}") for value, name in
                                 ((pitch, "row_pitch"), (height, "height")))
            room = Signal(signed(len(base) + 2), name=f"check_{label}_room")
            channel_groups = Signal(len(channels) - lane_bits + 1, name=f"check_{label}_channel_groups")
            width_groups = Signal(len(width) - lane_bits + 1, name=f"check_{label}_width_groups")
            m.d.sync += [room.eq(config.act_depth - base), pitch_2.eq(pitch), height_2.eq(height),
                         channel_groups.eq((channels + lanes - 1) >> lane_bits),
                         width_groups.eq((width + lanes - 1) >> lane_bits)]
            words = registered_product(m, pitch_2, height_2, f"check_{label}_words")
            minimum = registered_product(m, channel_groups, width_groups, f"check_{label}_pitch")
            regions.append((label, room, pitch_2, words, minimum))
        add, weighted = Signal(name="check_add"), Signal(name="check_weighted")
        bias_end = Signal(range((1 << len(d.bias_base)) + (1 << len(d.out_channels))), name="check_bias_end")
        m.d.sync += [add.eq(is_add), weighted.eq(kind["conv"] | kind["depthwise"] | kind["fully_connected"]),
                     bias_end.eq(d.bias_base + ((d.out_channels + lanes - 1) >> lane_bits))]

        # Stages 2 .. 1 + PRODUCT_LATENCY: the products; everything else carried beside them. Stage 2: the output
        # size's flag registered beside the others, the bias check registered. Stage 3: the flags' first failure
        # registered (every flag outranks the region checks).
        def carried(signal, stages=PRODUCT_LATENCY):
            name = signal.name
            for stage in range(stages):
                signal, previous = Signal.like(signal, name=f"{name}_{stage + 1}"), signal
                m.d.sync += signal.eq(previous)
            return signal
        flagged = {name: carried(flag, 1) for name, flag in flagged.items()}
        flagged["output_size"] = Signal(name="check_output_size")
        m.d.sync += flagged["output_size"].eq(output_size)
        assert CHECKS[len(flagged) + 1:] == ("row_pitch", "activation_bounds", "bias_bounds")
        early_failed = Signal(name="check_early")
        early_check = Signal(range(len(CHECKS)), name="check_early_index")
        m.d.sync += [early_failed.eq(0), early_check.eq(0)]
        for index, name in reversed(list(enumerate(CHECKS[1:len(flagged) + 1], start=1))):
            with m.If(flagged[name]):
                m.d.sync += [early_failed.eq(1), early_check.eq(index)]
        bias_beyond = Signal(name="check_bias_bounds")
        m.d.sync += bias_beyond.eq(weighted & (bias_end > config.bias_depth))

        # Stage 2 + PRODUCT_LATENCY: each region's comparisons registered (one flag per region and check: no OR
        # after the comparisons' carry chains), the earlier verdicts beside them.
        late = {name: [] for name in ("row_pitch", "activation_bounds")}
        for label, room, pitch, words, minimum in regions:
            active = carried(add) if label == "in2" else 1
            for name, compare in (("row_pitch", carried(pitch) < minimum), ("activation_bounds", words > carried(room))):
                flag = Signal(name=f"check_late_{name}_{label}")
                m.d.sync += flag.eq(active & compare)
                late[name].append(flag)
        late_early, late_check = Signal(name="check_late_early"), Signal.like(early_check, name="check_late_index")
        late_bias = Signal(name="check_late_bias_bounds")
        m.d.sync += [late_early.eq(carried(early_failed, PRODUCT_LATENCY - 2)),
                     late_check.eq(carried(early_check, PRODUCT_LATENCY - 2)),
                     late_bias.eq(carried(bias_beyond, PRODUCT_LATENCY - 1))]

        # Stage 3 + PRODUCT_LATENCY: the first failing check of CHECKS registered.
        failed = Signal(name="check_failed")
        failed_check = Signal(range(len(CHECKS)), name="check_failed_index")
        with m.If(late_early):
            m.d.sync += [failed.eq(1), failed_check.eq(late_check)]
        verdicts = {name: Cat(*flags).any() for name, flags in late.items()}     # row_pitch, activation_bounds
        verdicts["bias_bounds"] = late_bias
        for name, flag in verdicts.items():
            with m.Elif(flag):
                m.d.sync += [failed.eq(1), failed_check.eq(CHECKS.index(name))]
        with m.Else():
            m.d.sync += failed.eq(0)
        return failed, failed_check
