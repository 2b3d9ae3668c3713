"""The WESS requantizer: int32 accumulators -> int8 activations, several lanes per cycle.

Implements docs/arithmetic.md section 5 bit for bit; ``golden/requant.py`` is its model. Per lane and cycle it takes
one accumulator and that output channel's WESS shift k_c; the layer's fixed-point multiplier, shift exponent, output
zero point and clamp bounds are quasi-static inputs (hold them while results are in flight).

Pipeline (one register per row, :attr:`Requantizer.latency` cycles from ``i`` to ``o``)::

    1  left = max(e_c, 0), r = min(max(-e_c, 0), 32)      (e_c = shift - k_c, per-channel exponent)
    2  acc << (left & 0b11000)                            (coarse half of the left shift, 56 bits: never wraps)
    3  w = . << (left & 0b00111)                          (fine half, 63 bits)
    4  w fits int32: its bits 31..62 all equal            (a LUT tree; the low 32 bits and the sign beside it)
    5  x = sat32(w)                                       (a multiplexer)
    6  four 17x17 partial products of x * multiplier      (one registered MULT18X18D each, hdl.dsp.Multiplier:
    7                                                      its input, pipeline and output registers are stages
    8                                                      6, 7 and 8; x reaches them from a fabric register)
    9  middle partial products summed
    10 h = (x * multiplier + 2**30) >> 31                 (SaturatingRoundingDoublingHighMul), rounding terms of r
    11 h + 2**(r-1) (h >= 0) or h + 2**(r-1) - 1 (h < 0)  (RoundingDivideByPOT's rounding, for r > 0)
    12 >> (r & 0b111000)                                  (coarse half of the barrel shifter)
    13 v = . >> (r & 0b000111)                            (fine half)
    14 v fits 10 bits: its bits 9..33 all equal           (a LUT tree; the low 10 bits and the sign beside it)
    15 v < qmin - zp, v > qmax - zp, v + zp               (10-bit comparisons and an 8-bit sum, side by side)
    16 clamp(sat10(v) + zero_point, qmin, qmax)           (a multiplexer)

No stage has more than one carry chain (side by side) or a LUT tree of more than a few levels: each test of a wide
value's range (saturation, stages 4 and 14) is registered apart from the shift before it and the selection after it.

Each lane registers its own copy of the layer parameters (and the clamp bounds less the zero point), so they must be
stable :attr:`Requantizer.params_setup` cycles before a layer's first accumulator.

The multiplier is unsigned (Q0.31, never INT32_MIN), so SRDHM's saturating case cannot arise and stage 10 is exact.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.config import check_config
from hdl.dsp import Multiplier

__all__ = ["RequantParams", "requant_input_layout", "Requantizer", "rounding_right_shift", "ROUNDING_SHIFT_LATENCY"]

#: Registers of :func:`rounding_right_shift`: the value with its rounding terms, the rounded value, the coarse and the
#: fine right shift (stages 10 to 13 of the requantizer).
ROUNDING_SHIFT_LATENCY = 4


class RequantParams(data.Struct):
    """Per-layer requantization parameters (docs/arithmetic.md, section 5)."""
    multiplier: unsigned(31)
    shift: signed(6)
    zero_point: signed(8)
    qmin: signed(8)
    qmax: signed(8)


def requant_input_layout(config):
    """Input payload of :class:`Requantizer`: per lane an int32 accumulator and its channel's shift k_c."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(config.acc_bits), config.lanes),
        "channel_shift": data.ArrayLayout(unsigned(config.shift_bits), config.lanes),
    })


def rounding_right_shift(stage, value, right):
    """RoundingDivideByPOT(``value``, ``right``) for ``0 <= right <= 32`` over :data:`ROUNDING_SHIFT_LATENCY`
    registers; returns the last one (signed, 34 bits): stages 10 to 13 of the pipeline above.

    ``stage(shape, value, suffix)`` builds one pipeline register (the caller's, so that it follows the caller's
    enable); ``value`` is the (combinational) input of the first register, signed and below ``2**32`` in magnitude;
    ``right`` is registered one stage before it. Shared by :class:`Requantizer` and ``hdl.add.AddUnit``.
    """
    # 1: the value, and the rounding terms decoded from ``right`` beside it (shifters, no carry chain), so that the
    # next stage is one adder: RoundingDivideByPOT rounds half away from zero, adding 2**(r-1) to a value >= 0 and
    # 2**(r-1) - 1 to a negative one, 0 for r = 0.
    value = stage(value.shape(), value, "value")
    half = stage(unsigned(32), (Const(1, 33) << right)[1:], "half")
    half_less = stage(unsigned(32), (~(Const(2**33 - 1, 33) << right))[1:], "half_less")
    right = stage(unsigned(6), right, "rounding_right")
    # 2: the rounded value.
    rounded = stage(signed(34), value + Mux(value[-1], half_less, half), "rounded")
    coarse_right = stage(unsigned(6), right, "coarse_right")
    # 3, 4: the arithmetic right shift, split into a coarse and a fine barrel shifter.
    coarse = stage(signed(34), rounded >> (coarse_right & 0b111000), "coarse")
    fine_right = stage(unsigned(3), coarse_right[:3], "fine_right")
    return stage(signed(34), coarse >> fine_right, "fine")


class Requantizer(wiring.Component):
    """``config.lanes`` parallel requantizers behind one stream interface.

    Parameters
    ----------
    config : NPUConfig
        The hardware instance; uses ``lanes``, ``acc_bits`` and ``shift_bits``.

    Members
    -------
    params : ``In(RequantParams)``
        Layer parameters; each lane keeps registered copies, so they must be stable from
        :attr:`params_setup` cycles before the first accumulator of a layer until its last result.
    i : ``In(stream.Signature(requant_input_layout(config)))``
        Accumulators and channel shifts, one per lane.
    o : ``Out(stream.Signature(data.ArrayLayout(signed(8), lanes)))``
        int8 results. The whole pipeline stalls while ``o.valid & ~o.ready``.
    """

    #: Stages 1 to 5, the multipliers (stages 6 to 8), stage 9, the rounding right shift (stages 10 to 13) and stages
    #: 14 to 16.
    latency = 5 + Multiplier.LATENCY + 1 + ROUNDING_SHIFT_LATENCY + 3
    params_setup = 2

    def __init__(self, config):
        self._config = check_config(config)
        super().__init__({
            "params": In(RequantParams),
            "i": In(stream.Signature(requant_input_layout(config))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(8), config.lanes))),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        params = self.params
        enable = Signal()
        m.d.comb += [
            enable.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(enable),
        ]

        valid = Signal(self.latency)
        with m.If(enable):
            m.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))
        m.d.comb += self.o.valid.eq(valid[-1])

        for lane in range(self._config.lanes):
            result = self._lane(m, enable, params, self.i.payload.acc[lane], self.i.payload.channel_shift[lane],
                                name=f"lane{lane}")
            m.d.comb += self.o.payload[lane].eq(result)
        return m

    def _lane(self, m, enable, params, acc, channel_shift, *, name):
        """Build one lane's pipeline; returns its registered int8 result."""
        def stage(shape, value, suffix, *, always=False):
            reg = Signal(shape, name=f"{name}_{suffix}")
            with m.If(enable | always):
                m.d.sync += reg.eq(value)
            return reg

        # Lane-local copies of the quasi-static layer parameters (short routes, no fan-out across lanes), and the
        # clamp bounds relative to the unbiased value, so that stage 15 compares without an adder in front.
        shift = stage(signed(6), params.shift, "param_shift", always=True)
        multiplier = stage(unsigned(31), params.multiplier, "param_multiplier", always=True)
        zero_point = stage(signed(8), params.zero_point, "param_zero_point", always=True)
        qmin = stage(signed(8), params.qmin, "param_qmin", always=True)
        qmax = stage(signed(8), params.qmax, "param_qmax", always=True)
        low = stage(signed(10), qmin - zero_point, "param_low", always=True)
        high_bound = stage(signed(10), qmax - zero_point, "param_high", always=True)

        # 1: the shift amounts of e_c = shift - k_c (in [-47, 31]) from two parallel subtractors: left = max(e_c, 0),
        # right = min(max(-e_c, 0), 32).
        acc_1 = stage(signed(32), acc, "acc")
        exponent = Signal(signed(7), name=f"{name}_exponent")
        negated = Signal(signed(7), name=f"{name}_negated")
        m.d.comb += [exponent.eq(shift - channel_shift), negated.eq(channel_shift - shift)]
        left = stage(unsigned(5), Mux(exponent[-1] | (exponent == 0), 0, exponent[:5]), "left")
        right_1 = stage(unsigned(6), Mux(negated[-1] | (negated == 0), 0,
                                         Mux(negated[5] & (negated[:5] != 0), 32, negated[:6])), "right1")

        # 2-5: left shift in two halves, saturated to int32: the 63-bit product fits in 32 bits iff its bits 31..62
        # are all equal.
        coarse = stage(signed(56), acc_1 << (left & 0b11000), "coarse_left")
        fine_left = stage(unsigned(3), left[:3], "fine_left")
        right = stage(unsigned(6), right_1, "right2")
        wide = stage(signed(63), coarse << fine_left, "wide")
        top_bits = wide[31:]
        fits = stage(1, ~top_bits.any() | top_bits.all(), "fits")
        wide_low = stage(signed(32), wide[:32], "wide_low")
        negative = stage(1, wide[-1], "negative")
        x = stage(signed(32), Mux(fits, wide_low, Mux(negative, -(1 << 31), (1 << 31) - 1)), "x")
        for index in range(4 + Multiplier.LATENCY):     # to stage 9
            right = stage(unsigned(6), right, f"right{index + 3}")

        # 6-8: x * multiplier as four partial products; x = xh * 2**16 + xl, multiplier = mh * 2**16 + ml.
        partial = {}
        for key, a, b in (("hh", x[16:].as_signed(), multiplier[16:]), ("hl", x[16:].as_signed(), multiplier[:16]),
                          ("lh", x[:16], multiplier[16:]), ("ll", x[:16], multiplier[:16])):
            mult = m.submodules[f"{name}_mult_{key}"] = Multiplier(a.shape(), b.shape())
            m.d.comb += [mult.a.eq(a), mult.b.eq(b), mult.enable.eq(enable)]
            partial[key] = mult.p

        # 9: sum the middle partial products; the outer ones do not overlap, so concatenated they take the
        # rounding constant in a one-operand add.
        p_mid = stage(signed(34), partial["hl"] + partial["lh"], "p_mid")
        outer = stage(signed(64), Cat(partial["ll"][:32], partial["hh"][:32]).as_signed() + (1 << 30), "outer")

        # 10: SaturatingRoundingDoublingHighMul == floor((x * multiplier + 2**30) / 2**31) for multiplier >= 0;
        # 10-13: RoundingDivideByPOT.
        product = outer + (p_mid << 16)
        fine = rounding_right_shift(stage, product[31:63].as_signed(), right)

        # 14: saturating v to [-512, 511] is exact (|zero_point|, |qmin|, |qmax| <= 128) and keeps the comparisons
        # narrow; the range test reduces the top bits (a LUT tree, no carry chain).
        top = fine[9:]
        fits = stage(1, ~top.any() | top.all(), "fits_10")
        scaled = stage(signed(10), fine[:10], "scaled")
        negative = stage(1, fine[-1], "negative_10")

        # 15: output zero point and clamp bounds (fused ReLU / ReLU6 are clamp bounds): v compared with them before the
        # bias is added (two short carry chains side by side), and the low byte of v + zero_point, the result when v
        # lies within the bounds.
        below = stage(1, scaled < low, "below")
        above = stage(1, scaled > high_bound, "above")
        biased = stage(signed(8), scaled[:8] + zero_point, "biased")
        fits, negative = stage(1, fits, "fits_15"), stage(1, negative, "negative_15")

        # 16: the selection; a v that does not fit 10 bits lies beyond both bounds (|qmin - zp|, |qmax - zp| <= 255),
        # on its sign's side.
        in_range = Mux(below, qmin, Mux(above, qmax, biased))
        return stage(signed(8), Mux(fits, in_range, Mux(negative, qmin, qmax)), "out")
