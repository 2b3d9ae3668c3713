"""hdl/weight_decoder.py in the Amaranth simulator against golden.layouts.decode_code_words: ``rtl_decode`` (the
simulated RTL) equals ``ref_decode`` (the golden decoder) on every codebook and code word."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.config import NPUConfig
from golden.layouts import decode_code_words
from hdl.weight_decoder import WeightDecoder


def _codebooks(rng):
    # Extremes and the paper's shapes (UQ {-3,-1,1,3}, SPTQ/MSPTQ {-4,-1,1,4} times a step), then random ones.
    fixed = [[-128, -1, 1, 127], [-3, -1, 1, 3], [-64, -16, 16, 64], [-128, -127, 126, 127]]
    drawn = [np.sort(rng.choice(np.arange(-128, 128), size=4, replace=False)).tolist() for _ in range(6)]
    return fixed + drawn


def ref_decode(config, cases):
    """Each ``(codebook, word)``'s int8 weight word as golden.layouts.decode_code_words decodes it."""
    return [decode_code_words([word], codebook, config)[0].tolist() for codebook, word in cases]


def rtl_decode(config, cases):
    """Each ``(codebook, word)``'s int8 weight word as the RTL decoder decodes it (combinational: no clock)."""
    dut = WeightDecoder(config)
    got = []

    async def bench(ctx):
        for codebook, word in cases:
            for i, value in enumerate(codebook):
                ctx.set(dut.codebook[i], value)
            ctx.set(dut.codes, word)
            got.append([[ctx.get(dut.weights[r][c]) for c in range(config.lanes)] for r in range(config.lanes)])

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_decoder_matches_golden():
    config = NPUConfig(lanes=4)
    rng = np.random.default_rng(6)
    bits = 2 * config.macs
    words = [0, (1 << bits) - 1, int("10" * config.macs, 2)] + \
        [int(rng.integers(0, 1 << 62)) | int(rng.integers(0, 1 << 62)) << 62 | int(rng.integers(0, 16)) << 124
         for _ in range(12)]
    words = [w & ((1 << bits) - 1) for w in words]
    cases = [(codebook, word) for codebook in _codebooks(rng) for word in words]
    assert rtl_decode(config, cases) == ref_decode(config, cases)


def test_decoder_rejects_bad_config():
    with pytest.raises(TypeError, match="NPUConfig"):
        WeightDecoder("lanes=8")
