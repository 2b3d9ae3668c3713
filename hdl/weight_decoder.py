"""The two-bit weight decoder: one word of ``lanes x lanes`` two-bit codes -> one int8 weight word.

The RTL of ``golden.layouts.decode_code_words`` (docs/memory.md section 2a): element ``(r, c)`` of the int8 word is
``codebook[code]`` with ``code`` at bits ``[2(r*lanes + c) + 1 : 2(r*lanes + c)]`` of the code word, i.e. ``lanes**2``
4-to-1 multiplexers of 8 bits whose inputs are the layer's four codebook values. Combinational: ``WeightMemory``
places it between its RAM read port and its output register, so decoding adds no cycle.
"""

from amaranth.hdl import Array, Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.config import check_config
from golden.layouts import CODE_BITS
from hdl.layouts import codebook_layout, weight_word

__all__ = ["WeightDecoder"]


class WeightDecoder(wiring.Component):
    """Decodes a code word into an int8 weight word (combinational).

    Parameters
    ----------
    config : NPUConfig

    Members
    -------
    codes : ``In(unsigned(2 * lanes**2))``
        One code word, lane ``i = r*lanes + c`` at bits ``[2i + 1 : 2i]``.
    codebook : ``In(hdl.layouts.codebook_layout())``
        The layer's four int8 weights; hold it stable while the layer runs.
    weights : ``Out(hdl.layouts.weight_word(config))``
        The decoded int8 weight word.
    """

    def __init__(self, config):
        self._config = check_config(config)
        super().__init__({
            "codes": In(unsigned(CODE_BITS * config.macs)),
            "codebook": In(codebook_layout()),
            "weights": Out(weight_word(config)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.lanes
        entries = Array(self.codebook[i] for i in range(1 << CODE_BITS))
        for r in range(lanes):
            for c in range(lanes):
                lane = r * lanes + c
                m.d.comb += self.weights[r][c].eq(entries[self.codes[CODE_BITS * lane:CODE_BITS * (lane + 1)]])
        return m
