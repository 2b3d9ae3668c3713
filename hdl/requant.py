"""The WESS requantizer: int32 accumulators -> int8 activations, several lanes per cycle.

Implements docs/arithmetic.md section 5 bit for bit; ``golden/requant.py`` is its model. Per lane and cycle it takes
one accumulator and that output channel's WESS shift k_c; the layer's fixed-point multiplier, shift exponent, output
zero point and clamp bounds are quasi-static inputs (hold them while results are in flight).

Pipeline (one register per row, :attr:`Requantizer.latency` cycles from ``i`` to ``o``)::

    1  e_c = shift - k_c                                  (per-channel exponent)
    2  x = wrap32(acc << max(e_c, 0)),  r = min(max(-e_c, 0), 32)
    3  four 17x17 partial products of x * multiplier      (one MULT18X18D each on ECP5)
    4  middle partial products summed
    5  h = (x * multiplier + 2**30) >> 31                 (SaturatingRoundingDoublingHighMul)
    6  h + (2**(r-1) - (h < 0)), for r > 0                (RoundingDivideByPOT's rounding term)
    7  >> (r & 0b111000)                                  (coarse half of the barrel shifter)
    8  >> (r & 0b000111)                                  (fine half)
    9  clamp(. + zero_point, qmin, qmax)

The multiplier is unsigned (Q0.31, never INT32_MIN), so SRDHM's saturating case cannot arise and stage 5 is exact.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.config import NPUConfig

__all__ = ["RequantParams", "requant_input_layout", "Requantizer"]


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


class Requantizer(wiring.Component):
    """``config.lanes`` parallel requantizers behind one stream interface.

    Parameters
    ----------
    config : NPUConfig
        The hardware instance; uses ``lanes``, ``acc_bits`` and ``shift_bits``.

    Members
    -------
    params : ``In(RequantParams)``
        Layer parameters; must be stable while results are in flight.
    i : ``In(stream.Signature(requant_input_layout(config)))``
        Accumulators and channel shifts, one per lane.
    o : ``Out(stream.Signature(data.ArrayLayout(signed(8), lanes)))``
        int8 results. The whole pipeline stalls while ``o.valid & ~o.ready``.
    """

    latency = 9

    def __init__(self, config):
        if not isinstance(config, NPUConfig):
            raise TypeError(f"config must be an NPUConfig, not {config!r}")
        self._config = config
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
        def stage(shape, value, suffix):
            reg = Signal(shape, name=f"{name}_{suffix}")
            with m.If(enable):
                m.d.sync += reg.eq(value)
            return reg

        # 1: the channel's exponent e_c = shift - k_c, in [-32 - 15, 31].
        acc_1 = stage(signed(32), acc, "acc")
        exponent = stage(signed(7), params.shift - channel_shift, "exponent")

        # 2: left shift (wrapping, as a 32-bit register does) or a right-shift amount clamped to 32.
        left = Mux(exponent > 0, exponent[:5], 0)
        right_amount = -exponent
        right = Mux(exponent >= 0, 0, Mux(right_amount > 32, 32, right_amount[:6]))
        x = stage(signed(32), (acc_1 << left)[:32].as_signed(), "x")
        right_2 = stage(unsigned(6), right, "right2")

        # 3: x * multiplier as four partial products; x = xh * 2**16 + xl, multiplier = mh * 2**16 + ml.
        xh, xl = x[16:].as_signed(), x[:16]
        mh, ml = params.multiplier[16:], params.multiplier[:16]
        p_hh = stage(signed(32), xh * mh, "p_hh")
        p_hl = stage(signed(33), xh * ml, "p_hl")
        p_lh = stage(signed(32), xl * mh, "p_lh")
        p_ll = stage(unsigned(32), xl * ml, "p_ll")
        right_3 = stage(unsigned(6), right_2, "right3")

        # 4: sum the middle partial products.
        p_mid = stage(signed(34), p_hl + p_lh, "p_mid")
        p_hh_4 = stage(signed(32), p_hh, "p_hh4")
        p_ll_4 = stage(unsigned(32), p_ll, "p_ll4")
        right_4 = stage(unsigned(6), right_3, "right4")

        # 5: SaturatingRoundingDoublingHighMul == floor((x * multiplier + 2**30) / 2**31) for multiplier >= 0.
        product = (p_hh_4 << 32) + (p_mid << 16) + p_ll_4 + (1 << 30)
        high = stage(signed(32), product[31:63].as_signed(), "high")
        right_5 = stage(unsigned(6), right_4, "right5")

        # 6: RoundingDivideByPOT rounds half away from zero: add 2**(r-1), less one for negative values.
        half = (Const(1, 34) << right_5)[1:]
        rounded = stage(signed(34), high + half - ((high < 0) & (right_5 != 0)), "rounded")
        right_6 = stage(unsigned(6), right_5, "right6")

        # 7, 8: the arithmetic right shift, split into a coarse and a fine barrel shifter.
        coarse = stage(signed(34), rounded >> (right_6 & 0b111000), "coarse")
        right_7 = stage(unsigned(3), right_6[:3], "right7")
        scaled = stage(signed(34), coarse >> right_7, "scaled")

        # 9: output zero point and clamp (fused ReLU / ReLU6 are clamp bounds).
        biased = scaled + params.zero_point
        clamped = Mux(biased < params.qmin, params.qmin, Mux(biased > params.qmax, params.qmax, biased))
        return stage(signed(8), clamped, "out")
