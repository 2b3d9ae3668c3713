"""Registered copies of a control signal, so that no single flip-flop drives hundreds of loads.

At 8 lanes one step flag of the MAC array reaches 64 MACs' operand, accumulator and result registers (thousands of
flip-flop inputs); routed from one flip-flop, that net alone cost 8.5 ns on ECP5 (measured 2026-12-02,
``python tools/synth.py --block mac-array --mapper abc9-dff --seeds 1``: 92.8 MHz). Several copies of the register,
each driving a share of the loads, are the usual cure. Yosys merges flip-flops with the same inputs, so every copy
carries the ``keep`` attribute, and ``tools/synth.py`` marks the flip-flops behind ``keep`` wires as kept before
``synth_ecp5`` (:data:`KEEP_FLIP_FLOPS`).
"""

from amaranth.hdl import Signal

__all__ = ["KEEP_FLIP_FLOPS", "kept_copies", "registered_copies"]

#: The yosys commands, run before ``synth_ecp5``, that keep each flip-flop driving a ``keep`` wire: without them
#: ``opt_merge`` folds identical copies back into one.
KEEP_FLIP_FLOPS = "proc; setattr -set keep 1 a:keep %ci1:+$dff[Q] t:$dff %i"


def kept_copies(signal, count, name):
    """``count`` signals like ``signal`` (named ``{name}_{k}``), kept apart by synthesis; the caller assigns each
    wherever it assigns ``signal``, so that they equal it in every cycle."""
    return [Signal.like(signal, name=f"{name}_{k}", attrs={"keep": 1}) for k in range(count)]


def registered_copies(m, value, count, name):
    """``count`` flip-flop copies of ``value``, one cycle later (named ``{name}_{k}``), kept apart by synthesis."""
    copies = kept_copies(value, count, name)
    m.d.sync += [copy.eq(value) for copy in copies]
    return copies
