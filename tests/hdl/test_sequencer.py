"""Amaranth-simulator tests of hdl/sequencer.py against golden/sequencer.py: every step of small layers of each kind,
``rtl_steps`` (the simulated RTL) equal to ``ref_steps`` (the golden sequencer)."""

import pytest
from amaranth.sim import Simulator

from golden.config import NPUConfig
from golden.descriptor import encode_descriptor, layer_descriptor
from golden.pool import MAX_POOL_PARAMS
from golden.sequencer import SEQUENCER_LATENCY, issue_cycles, steps
from hdl.sequencer import Sequencer

CONFIG = NPUConfig(lanes=4, act_depth=512, weight_depth=256, bias_depth=32, dim_bits=6, channel_bits=7)
#: Where a pass's words go (``golden.sequencer.Step.out``).
OUT_FIELDS = ("address", "address_next", "bank", "pixels", "pair", "bias_address")


def _step(rows, weights, first, last, macs, out):
    """One issued step as both sides report it, with what the hardware ignores left out: a row's ``(bank, address)``
    only where it is valid, the weight word and rows only where the layer has weights, the output location only on a
    pass's last step and its ``address_next`` only where a second group follows (``pair``)."""
    if out is not None and not out["pair"]:
        out = {name: value for name, value in out.items() if name != "address_next"}
    return dict(rows=[(int(bank), int(address)) if valid else None for bank, address, valid in rows],
                weights=weights, first=bool(first), last=bool(last), macs=int(macs), out=out)


def ref_steps(config, descriptor):
    """The golden sequencer's steps for ``descriptor``: the cycle (after start) of the first, the cycles spent issuing
    them, and each step (:func:`_step`)."""
    return dict(first_cycle=SEQUENCER_LATENCY, issue_cycles=issue_cycles(descriptor, config),
                steps=[_step(step.rows, None if step.weight_address is None else
                             (step.weight_address, list(step.weight_rows)),
                             step.first, step.last, step.macs, step.out) for step in steps(descriptor, config)])


def rtl_steps(config, descriptor):
    """The steps the RTL issues for ``descriptor``, as :func:`ref_steps` reports them."""
    dut = Sequencer(config)
    issued = []

    limit = 4 * (SEQUENCER_LATENCY + issue_cycles(descriptor, config)) + 100

    async def bench(ctx):
        encoded = encode_descriptor(descriptor, config)
        ctx.set(dut.descriptor.as_value(), encoded)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        # sampled with start: from the next cycle on, every descriptor bit flipped
        ctx.set(dut.descriptor.as_value(), ~encoded & ((1 << len(dut.descriptor.as_value())) - 1))
        cycle = 1
        while True:
            valid, payload, busy = ctx.get(dut.step.valid), ctx.get(dut.step.payload), ctx.get(dut.busy)
            if valid:
                issued.append((cycle, payload))
            if not busy:
                break
            await ctx.tick()
            cycle += 1
            assert cycle < limit, f"still busy after {limit} cycles"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    lanes, pooling = config.lanes, descriptor.kind in ("average_pool", "max_pool")     # no weights to read

    def seen(got):
        rows = [(got.act_bank[r], got.act_address[got.act_bank[r]], got.act_valid[r]) for r in range(lanes)]
        weights = None if pooling else (got.weight_address, [got.weight_row[r] for r in range(lanes)])
        out = {name: getattr(got.out, name) for name in OUT_FIELDS} if got.last else None
        return _step(rows, weights, got.first, got.last, got.macs, out)

    return dict(first_cycle=issued[0][0], issue_cycles=issued[-1][0] - issued[0][0] + 1,
                steps=[seen(got) for _, got in issued])


@pytest.mark.parametrize("kind, shape, cout, kernel, stride, padding", [
    ("conv", (5, 6, 6), 7, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("conv", (7, 5, 9), 5, (3, 3), (2, 2), (0, 1, 1, 1)),
    ("conv", (3, 4, 8), 8, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("conv", (6, 6, 3), 4, (3, 3), (2, 1), (1, 1, 0, 0)),
    ("fully_connected", (1, 1, 10), 6, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("fully_connected", (2, 3, 5), 3, (2, 3), (1, 1), (0, 0, 0, 0)),
    ("depthwise", (4, 9, 10), 10, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("depthwise", (7, 11, 13), 13, (3, 3), (2, 2), (0, 1, 0, 1)),
    ("depthwise", (6, 8, 8), 8, (3, 3), (2, 2), (1, 1, 1, 1)),
    ("depthwise", (5, 7, 24), 24, (3, 3), (2, 2), (1, 1, 1, 1)),    # three passes over the groups: weight blocks
    ("depthwise", (5, 5, 4), 4, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("average_pool", (3, 5, 9), 9, (3, 5), (1, 1), (0, 0, 0, 0)),
    ("max_pool", (7, 11, 13), 13, (3, 3), (2, 2), (1, 1, 1, 1)),
    ("max_pool", (4, 9, 10), 10, (2, 2), (1, 1), (0, 1, 0, 1)),
])
def test_sequencer_matches_golden(kind, shape, cout, kernel, stride, padding):
    params = dict(MAX_POOL_PARAMS) if kind == "max_pool" else dict(
        input_zero_point=0 if kind == "average_pool" else -3, multiplier=1 << 30, shift=-4, weight_base=5, bias_base=2)
    descriptor = layer_descriptor(kind, shape, cout, config=CONFIG, kernel=kernel, stride=stride, padding=padding,
                                  in_base=3, out_base=300, **params)
    expected = ref_steps(CONFIG, descriptor)
    assert rtl_steps(CONFIG, descriptor) == expected
    assert sum(step["macs"] for step in expected["steps"]) == descriptor.macs


def test_sequencer_eight_lanes():
    config = NPUConfig(act_depth=1024, weight_depth=512, bias_depth=64, dim_bits=6, channel_bits=8)
    for stride in (1, 2):
        descriptor = layer_descriptor("depthwise", (5, 19, 20), 20, config=config, kernel=(3, 3),
                                      stride=(stride, stride), padding=(1, 1, 1, 1), in_base=1, out_base=500)
        expected = ref_steps(config, descriptor)
        assert rtl_steps(config, descriptor) == expected
        assert sum(step["macs"] for step in expected["steps"]) == descriptor.macs


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_sequencer_rejects_one_lane():
    with pytest.raises(ValueError, match=r"^the sequencer needs at least 2 lanes, not 1$"):
        Sequencer(NPUConfig(lanes=1))
