"""Amaranth shapes of the engine's memory words and of the port that loads them (docs/memory.md sections 1 to 3).

The RTL side of ``golden.layouts``: lane 0 in the least significant bits of every word, and the bias word built from
``golden.layouts.bias_word_fields``, so that images written by ``golden`` and words read by the RTL agree by
construction. The memories (``hdl/memory.py``), the weight decoder (``hdl/weight_decoder.py``), the MAC array and the
engine take their word shapes from here.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from golden.layouts import CODE_BITS, bias_word_fields

__all__ = ["activation_word", "weight_word", "bias_word", "codebook_layout", "load_signature"]


def activation_word(config):
    """One activation word: ``lanes`` int8 channels of one pixel."""
    return data.ArrayLayout(signed(8), config.lanes)


def weight_word(config):
    """One weight word: ``lanes`` rows of ``lanes`` int8 weights (also what a weight memory word holds: its bits hold
    four two-bit code words in a two-bit layer, docs/memory.md section 2a)."""
    return data.ArrayLayout(data.ArrayLayout(signed(8), config.lanes), config.lanes)


def bias_word(config):
    """One bias word: ``lanes`` int32 biases and ``lanes`` channel shifts k_c (``golden.layouts.bias_word_fields``)."""
    return data.StructLayout({name: data.ArrayLayout(signed(width) if is_signed else unsigned(width), config.lanes)
                              for name, width, is_signed in bias_word_fields(config)})


def codebook_layout():
    """A layer's codebook: the int8 weights of codes 0..3."""
    return data.ArrayLayout(signed(8), 1 << CODE_BITS)


def load_signature(address_bits_, shape):
    """A write-only port that fills a memory word by word (from the loader's side)."""
    return wiring.Signature({"address": Out(unsigned(address_bits_)), "data": Out(shape), "write": Out(1)})
