"""A block RAM: a ``depth x width`` memory with one write port and read ports of latency 2; DP16KD primitives with
their output registers on ECP5, or its model.

Every NPU memory reads through this block. Yosys' ``synth_ecp5`` maps a memory onto DP16KD block RAMs with the
output register off (REGMODE "NOREG": 5.83 ns clock-to-data, prjtrellis speed grade -6) and a fabric register after
it, which made a RAM read the critical path of the memories. :class:`BlockRAM` instantiates the DP16KD itself when
elaborated for :data:`hdl.dsp.ECP5` (``tools/synth.py``): its address register is the first cycle of the read, its
output register (REGMODE "OUTREG": 0.97 ns clock-to-data) the second, so no fabric register follows it. Elsewhere
(simulation, ``python -m hdl.top generate``, the benches) it is the behavioural model with the same latency: an
:class:`amaranth.lib.memory.Memory` with non-transparent read ports and one register after them.
tests/hdl/test_bram.py runs both against a Verilog model of the primitive's documented behaviour.

The DP16KD tiling: every tile in the same data-width configuration (:data:`DP16KD_SHAPES`, the true-dual-port ones:
port A writes, port B reads), the one with the fewest tiles and then the fewest tile rows; columns side by side in
width (the last one partly unused when the width is not a multiple), rows cascaded in depth, each row written only
when the write address selects it. A memory with several read ports is one copy of the tiles per read port (as yosys
builds it). With more than one row, a read port's word is a multiplexer over its rows' output registers, selected by
the address's high bits delayed two cycles: the one piece of logic after the primitive's output register, a
``rows``-to-1 multiplexer (2-to-1 or 4-to-1 in the NPU's default memories, where it exists at all).

On ECP5, as in any block RAM, a read and a write of the same address in the same cycle read an undefined word (the
model reads the old one); the NPU never does both (docs/memory.md). Initial contents are only for the model: on ECP5
the tiles start at zero and an ``init`` raises ValueError (synthesis runs with empty memories; the memories are
loaded through their write ports).
"""

import functools
import math
import operator

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from golden.layouts import address_bits
from hdl.dsp import ECP5
from hdl.layouts import load_signature

__all__ = ["BlockRAM", "DP16KD_SHAPES", "dp16kd_tiling"]

#: DP16KD configurations, (depth, width); 512x36 is the pseudo-dual-port mode (not used by :class:`BlockRAM`).
DP16KD_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))

#: The DP16KD's address pins per port: a word of width w is addressed by the high bits, the low ones unused (byte
#: write enables in the 18-bit configuration).
_ADDRESS_PINS = 14
_DATA_PINS = 18
_TRUE_DUAL_PORT = tuple(shape for shape in DP16KD_SHAPES if shape[1] <= _DATA_PINS)


def dp16kd_tiling(width, depth):
    """``(tile_depth, tile_width, rows, columns)``: the DP16KD configuration holding ``width x depth`` bits in the
    fewest tiles (``rows * columns`` per read port), then the fewest rows."""
    return min(((tile_depth, tile_width, math.ceil(depth / tile_depth), math.ceil(width / tile_width))
                for tile_depth, tile_width in _TRUE_DUAL_PORT), key=lambda t: (t[2] * t[3], t[2]))


class BlockRAM(wiring.Component):
    """``depth`` words of ``shape``: one write port, ``read_ports`` read ports of :attr:`LATENCY` cycles.

    Parameters
    ----------
    shape : ShapeLike
        A word's shape.
    depth : int
    read_ports : int
    init : list of int
        Initial words (the model only: on :data:`hdl.dsp.ECP5` a non-empty ``init`` raises ValueError).

    Members
    -------
    write : ``In(hdl.layouts.load_signature(...))``
        ``data`` written at ``address`` in a cycle with ``write`` high.
    read_address : ``In(ArrayLayout(unsigned, read_ports))``
        Each read port's address.
    read_data : ``Out(ArrayLayout(shape, read_ports))``
        Each read port's word, :attr:`LATENCY` cycles after its address (the old word if written in the same cycle).
    """

    #: The address register and the output register.
    LATENCY = 2

    def __init__(self, shape, depth, *, read_ports=1, init=()):
        self._shape, self._depth, self._init = shape, depth, list(init)
        bits = address_bits(depth)
        super().__init__({
            "write": In(load_signature(bits, shape)),
            "read_address": In(data.ArrayLayout(unsigned(bits), read_ports)),
            "read_data": Out(data.ArrayLayout(shape, read_ports)),
        })

    def elaborate(self, platform):
        m = Module()
        if platform == ECP5:
            if any(self._init):
                raise ValueError("BlockRAM: initial contents are not encoded into DP16KD tiles: load them through "
                                 "the write port")
            outputs = [self._tiles(m, port) for port in range(len(self.read_address))]
        else:
            width = Shape.cast(self._shape).width
            m.submodules.mem = mem = memory.Memory(shape=unsigned(width), depth=self._depth, init=self._init)
            write = mem.write_port()
            m.d.comb += [write.addr.eq(self.write.address), write.data.eq(Value.cast(self.write.data)),
                         write.en.eq(self.write.write)]
            outputs = []
            for address in self.read_address:
                port = mem.read_port(transparent_for=())
                m.d.comb += port.addr.eq(address)
                outputs.append(port.data)
            # All ports' output registers as one register: a vector assigned in one piece changes once per cycle,
            # which keeps event-driven simulators (Icarus) from re-evaluating its readers once per port.
            q = Signal(len(Cat(*outputs)), name="read_data_q", reset_less=True)
            m.d.sync += q.eq(Cat(*outputs))
            outputs = [q]
        m.d.comb += self.read_data.eq(Cat(*outputs))
        return m

    def _tiles(self, m, port):
        """Read port ``port``'s copy of the DP16KD tiles; returns its word (after the row multiplexer)."""
        width = Shape.cast(self._shape).width
        tile_depth, tile_width, rows, columns = dp16kd_tiling(width, self._depth)
        low = _ADDRESS_PINS - (tile_depth.bit_length() - 1)     # unused address pins below the word address
        row_bits = tile_depth.bit_length() - 1
        write_data = Value.cast(self.write.data)
        address = self.read_address[port]
        # The address pins: the word address above ``low`` unused pins, except that the 18-bit configuration writes
        # its two 9-bit bytes when write address pins 0 and 1 are high (byte enables).
        write_address = Signal(_ADDRESS_PINS, name=f"port{port}_ada")
        read_address = Signal(_ADDRESS_PINS, name=f"port{port}_adb")
        byte_enables = 0b11 if tile_width == _DATA_PINS else 0
        m.d.comb += [write_address.eq(Cat(Const(byte_enables, low), self.write.address[:row_bits])),
                     read_address.eq(Cat(Const(0, low), address[:row_bits]))]
        row_outputs = []
        for row in range(rows):
            row_output = Signal(columns * tile_width, name=f"port{port}_row{row}")
            row_outputs.append(row_output)
            selected = self.write.address[row_bits:] == row if rows > 1 else Const(1)
            for column in range(columns):
                bits = slice(column * tile_width, min(width, (column + 1) * tile_width))
                data_in = Signal(_DATA_PINS, name=f"port{port}_row{row}_column{column}_in")
                data_out = Signal(_DATA_PINS, name=f"port{port}_row{row}_column{column}_out")
                m.d.comb += [data_in.eq(write_data[bits]),
                             row_output[column * tile_width:(column + 1) * tile_width].eq(data_out)]
                m.submodules[f"port{port}_row{row}_column{column}"] = Instance(
                    "DP16KD", p_DATA_WIDTH_A=tile_width, p_DATA_WIDTH_B=tile_width,
                    p_REGMODE_A="OUTREG", p_REGMODE_B="OUTREG", p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL",
                    p_CSDECODE_A="0b000", p_CSDECODE_B="0b000", p_RESETMODE="SYNC", p_GSR="DISABLED",
                    i_CLKA=ClockSignal(), i_CEA=Const(1), i_OCEA=Const(1), i_RSTA=Const(0),
                    i_WEA=self.write.write & selected,
                    i_CLKB=ClockSignal(), i_CEB=Const(1), i_OCEB=Const(1), i_RSTB=Const(0), i_WEB=Const(0),
                    **{f"i_CS{p}{bit}": Const(0) for p in "AB" for bit in range(3)},
                    **{f"i_ADA{bit}": write_address[bit] for bit in range(_ADDRESS_PINS)},
                    **{f"i_ADB{bit}": read_address[bit] for bit in range(_ADDRESS_PINS)},
                    **{f"i_DIA{bit}": data_in[bit] for bit in range(_DATA_PINS)},
                    **{f"i_DIB{bit}": Const(0) for bit in range(_DATA_PINS)},
                    **{f"o_DOB{bit}": data_out[bit] for bit in range(_DATA_PINS)})
        if rows == 1:
            return row_outputs[0][:width]
        # The row of the word read: the address's high bits, delayed through the address and output registers; the
        # rows' words AND-ed with their selects and OR-ed (continuous assignments, defined from the first cycle in
        # event-driven simulators).
        row = address[row_bits:]
        delayed = [Signal.like(row, name=f"port{port}_row_{stage}", reset_less=True) for stage in (1, 2)]
        m.d.sync += [delayed[0].eq(row), delayed[1].eq(delayed[0])]
        return functools.reduce(operator.or_, (Mux(delayed[1] == index, output, 0)
                                               for index, output in enumerate(row_outputs)))[:width]
