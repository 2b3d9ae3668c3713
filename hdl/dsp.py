"""A registered multiplier: one ECP5 MULT18X18D with its input, pipeline and output registers, or its model.

Yosys' ``synth_ecp5`` maps a ``*`` onto a MULT18X18D with every register off (3.93 ns combinational, the critical
path of the engine's first synthesis), and absorbs no neighbouring flip-flop into it. :class:`Multiplier`
instantiates the primitive itself with REG_INPUTA/B, REG_PIPELINE and REG_OUTPUT on ``CLK0``, all enabled by
``CE0`` (prjtrellis, speed grade -6: 0.084 ns setup, 0.735 ns clock-to-out) when elaborated for :data:`ECP5`
(``tools/synth.py``), and is otherwise a behavioural model with the same three registers, which is what the benches
and tests simulate. tests/hdl/test_dsp.py runs both against a Verilog model of the primitive's documented behaviour.

The primitive's registers are neither reset (RST0 low, GSR off) nor read before the pipeline has filled: the model's
registers are reset-less too.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ECP5", "Multiplier", "PRODUCT_LATENCY", "registered_product"]

#: The elaboration platform of ECP5 synthesis: blocks instantiate hard primitives (``rtlil.convert(..., platform=ECP5)``).
ECP5 = "ecp5"

_OPERAND_BITS = 18
#: Bits of an unsigned operand slice of :func:`registered_product`.
_SLICE_BITS = _OPERAND_BITS - 1
_PRODUCT_BITS = 36


class Multiplier(wiring.Component):
    """``p = a * b``, :attr:`LATENCY` enabled cycles after ``a`` and ``b``: one registered MULT18X18D on :data:`ECP5`.

    Parameters
    ----------
    a_shape, b_shape : Shape
        Operand shapes; each fits an 18-bit signed operand (at most 18 bits signed or 17 unsigned).

    Members
    -------
    a, b : ``In(a_shape)``, ``In(b_shape)``
        Operands, taken by the input registers when ``enable`` is high.
    enable : ``In(1, init=1)``
        Clock enable of all three registers (``CE0``): the pipeline holds while it is low.
    p : ``Out(shape of a * b)``
        The product of the operands taken :attr:`LATENCY` enabled cycles before.
    """

    #: Input, pipeline and output registers.
    LATENCY = 3

    def __init__(self, a_shape, b_shape):
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        for name, shape in (("a", a_shape), ("b", b_shape)):
            if shape.width + (not shape.signed) > _OPERAND_BITS:
                raise ValueError(f"operand {name} of shape {shape!r} does not fit an 18-bit signed operand")
        p_shape = (Signal(a_shape) * Signal(b_shape)).shape()
        super().__init__({"a": In(a_shape), "b": In(b_shape), "enable": In(1, init=1), "p": Out(p_shape)})

    def elaborate(self, platform):
        m = Module()
        if platform == ECP5:
            a, b, p = Signal(signed(_OPERAND_BITS)), Signal(signed(_OPERAND_BITS)), Signal(signed(_PRODUCT_BITS))
            m.d.comb += [a.eq(self.a), b.eq(self.b), self.p.eq(p)]
            registers = {f"p_REG_{register}_{kind}": f"{kind}0" for register in ("INPUTA", "INPUTB", "PIPELINE",
                                                                              "OUTPUT")
                         for kind in ("CLK", "CE", "RST")}
            # The cascade inputs SRIA/SRIB and the C port stay unconnected (tied SRIA/SRIB make routing fail).
            m.submodules.mult = Instance(
                "MULT18X18D", **registers, p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT",
                i_CLK0=ClockSignal(), i_CE0=self.enable, i_RST0=Const(0), i_SIGNEDA=Const(1), i_SIGNEDB=Const(1),
                i_SOURCEA=Const(0), i_SOURCEB=Const(0),
                **{f"i_A{bit}": a[bit] for bit in range(_OPERAND_BITS)},
                **{f"i_B{bit}": b[bit] for bit in range(_OPERAND_BITS)},
                **{f"o_P{bit}": p[bit] for bit in range(_PRODUCT_BITS)})
        else:
            a = Signal.like(self.a, name="a_reg", reset_less=True)
            b = Signal.like(self.b, name="b_reg", reset_less=True)
            pipeline = Signal.like(self.p, name="pipeline", reset_less=True)
            output = Signal.like(self.p, name="output", reset_less=True)
            with m.If(self.enable):
                m.d.sync += [a.eq(self.a), b.eq(self.b), pipeline.eq(a * b), output.eq(pipeline)]
            m.d.comb += self.p.eq(output)
        return m


#: Cycles of :func:`registered_product`: the multiplier's registers and the fabric copy of its product.
PRODUCT_LATENCY = Multiplier.LATENCY + 1


def registered_product(m, a, b, name):
    """``a * b`` of unsigned ``a`` and ``b``, :data:`PRODUCT_LATENCY` cycles after them: one :class:`Multiplier` per
    17-bit slice of ``a`` (added to ``m`` as ``{name}_mult{i}``), each slice's product copied into a fabric register
    (``{name}_p{i}``: no logic at the DSP's output, whose route is long), the slices' shifted sum combinational; ``b``
    must fit one operand. For products of descriptor fields, wider than a MULT18X18D when memories are deep."""
    product = 0
    for low in range(0, len(a), _SLICE_BITS):
        part, index = a[low:low + _SLICE_BITS], low // _SLICE_BITS
        mult = m.submodules[f"{name}_mult{index}"] = Multiplier(part.shape(), b.shape())
        copy = Signal.like(mult.p, name=f"{name}_p{index}", reset_less=True)
        m.d.comb += [mult.a.eq(part), mult.b.eq(b)]
        m.d.sync += copy.eq(mult.p)
        product = product + (copy << low)
    return product
