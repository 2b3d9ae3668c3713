"""A pre-synthesis resource estimate for ECP5 from a design's RTLIL (``amaranth.back.rtlil.convert(..., platform=ECP5)``).

Seconds instead of a synthesis run's quarter hour: MULT18X18D are counted exactly (the instantiated registered
multipliers, ``hdl.dsp``, plus one per 18x18 tile of each remaining ``$mul``, which yosys maps onto combinational
DSPs), DP16KD exactly too (the instantiated tiles of ``hdl.bram``, plus for each remaining memory the cheapest block
configuration, 16384x1 to 512x36, times its read ports; memories with an asynchronous read port go to LUT RAM
instead), flip-flops from the ``$dff`` widths (the DSPs' and block RAMs' own registers excluded), and LUT4s to an
order of magnitude from per-cell rules (an adder or comparator one LUT per bit, a multiplexer one per bit, a barrel
shifter one per output bit and shift-amount bit). ``tools/synth.py`` prints the estimate beside yosys' and nextpnr's
counts.
"""

import math
import re

from hdl.bram import DP16KD_SHAPES

__all__ = ["estimate_resources"]

_CELL = re.compile(r"^  cell (\S+) \S+\n((?:    .*\n)*?)  end$", re.MULTILINE)
_MEMORY = re.compile(r"^  memory width (\d+) size (\d+) (\S+)$", re.MULTILINE)
_PARAMETER = re.compile(r"^    parameter \\(\w+) (\S+)$", re.MULTILINE)
_MODULE = re.compile(r"^module (\S+)$", re.MULTILINE)

# LUT4s per bit of a cell's widest port, by cell type.
_LUTS_PER_BIT = {"$add": 1, "$sub": 1, "$neg": 1, "$mux": 1, "$pmux": 1, "$lt": 1, "$le": 1, "$gt": 1, "$ge": 1,
                 "$eq": 0.5, "$ne": 0.5, "$and": 0.5, "$or": 0.5, "$xor": 1, "$reduce_or": 0.34, "$reduce_and": 0.34,
                 "$reduce_bool": 0.34, "$logic_not": 0.34}
_SHIFTS = ("$shl", "$shr", "$sshr", "$sshl", "$shift", "$shiftx")


def _dp16kd_blocks(width, depth):
    """The fewest DP16KD holding a ``width x depth`` memory with one read and one write port."""
    return min(math.ceil(width / block_width) * math.ceil(depth / block_depth)
               for block_depth, block_width in DP16KD_SHAPES)


def estimate_resources(text):
    """Estimated ECP5 resources of the RTLIL ``text``: ``{"MULT18X18D", "DP16KD", "FF", "LUT4"}`` (ints).

    Each module is counted once per instance: the RTLIL of ``rtlil.convert`` has one module per instance.
    """
    counts = {"MULT18X18D": 0, "DP16KD": 0, "FF": 0, "LUT4": 0.0}
    starts = [match.start() for match in _MODULE.finditer(text)] + [len(text)]
    for start, end in zip(starts, starts[1:]):
        module = text[start:end]
        read_ports, asynchronous = {}, set()
        for match in _CELL.finditer(module):
            kind, parameters = match[1], dict(_PARAMETER.findall(match[2]))
            width = lambda name: int(parameters.get(name, "0"))
            if kind in ("\\MULT18X18D", "\\DP16KD"):
                counts[kind[1:]] += 1
            elif kind == "$mul":
                counts["MULT18X18D"] += math.ceil(width("A_WIDTH") / 18) * math.ceil(width("B_WIDTH") / 18)
            elif kind in ("$dff", "$adff", "$dffe", "$sdff"):
                counts["FF"] += width("WIDTH")
            elif kind == "$memrd_v2":
                memory = parameters["MEMID"].strip('"').replace("\\\\", "\\")
                read_ports[memory] = read_ports.get(memory, 0) + 1
                if parameters.get("CLK_ENABLE") == "0":
                    asynchronous.add(memory)
            elif kind in _SHIFTS:
                counts["LUT4"] += width("Y_WIDTH") * width("B_WIDTH")
            elif kind in _LUTS_PER_BIT:
                counts["LUT4"] += _LUTS_PER_BIT[kind] * max(width("Y_WIDTH"), width("A_WIDTH"), width("WIDTH"))
        for memory_width, size, name in _MEMORY.findall(module):
            bits = int(memory_width) * int(size) * max(1, read_ports.get(name, 0))
            if name in asynchronous:
                counts["LUT4"] += bits / 16          # TRELLIS_DPR16X4: 64 bits in the 4 LUT4s of a slice pair
            else:
                counts["DP16KD"] += _dp16kd_blocks(int(memory_width), int(size)) * max(1, read_ports.get(name, 0))
    counts["LUT4"] = int(round(counts["LUT4"]))
    return counts
