"""Amaranth-simulator tests of hdl/memory.py against golden images: every bank and address of the activation, weight
(int8 words, and on the engine with the decoder every code word of every quarter too) and bias memories, filled at build time or through the write ports, read back exactly
``latency`` cycles after its address, one read a cycle; ``rtl_*`` (the simulated RTL) equals ``ref_*`` (the golden
words). Constructor errors are pinned."""

import dataclasses
import gc

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from golden.config import NPUConfig
from golden.images import MemoryImages, read_code_words, store_activation, store_bias, store_weights
from golden.layouts import CODE_BITS, decode_code_words, pack_bias_words, pack_words, unpack_bias_words
from golden.requant import INT32_MAX, INT32_MIN
from hdl.memory import ActivationMemory, BiasMemory, WeightMemory

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

CONFIG = NPUConfig(lanes=4, act_depth=32, weight_depth=16, bias_depth=8)
TWO_BIT = dataclasses.replace(CONFIG, weight_code_bits=CODE_BITS)
CODEBOOK = np.array([-128, -3, 5, 127])
SEED = 2026


def golden_images(config, seed):
    """Images that golden writes into every word (:class:`MemoryImages`).

    A 16 x 4 x 8 tensor fills the activation memory (2 words a row in each bank), an 8 x 2 x 2 x 8 conv layer the
    weight memory (2 output groups x 4 taps x 2 input groups), 32 channels' biases and shifts the bias memory; the first
    words hold the extremes (int8 -128 and 127, INT32_MIN and INT32_MAX, k_c 0 and 15). Read as code words (four to a
    weight word), the weight image's random bytes hold every code in every quarter.
    """
    rng = np.random.default_rng(seed)
    images = MemoryImages.empty(config)
    x = rng.integers(-128, 128, size=(config.act_depth // 2, config.lanes, 2 * config.lanes))
    x[0, 0, :2] = -128, 127
    store_activation(images.activation, x, base=0, config=config)
    weights = rng.integers(-128, 128, size=(2 * config.lanes, 2, 2, 2 * config.lanes))
    weights[0, 0, 0, :2] = -128, 127
    assert store_weights(images.weights, "conv", weights, base=0, config=config) == config.weight_depth
    channels = config.bias_depth * config.lanes
    bias = rng.integers(INT32_MIN, INT32_MAX, size=channels, endpoint=True)
    channel_shift = rng.integers(0, config.max_channel_shift + 1, size=channels)
    bias[:2], channel_shift[:2] = (INT32_MIN, INT32_MAX), (0, config.max_channel_shift)
    store_bias(images.bias, images.channel_shift, bias, channel_shift, base=0, config=config)
    return images


def simulate(dut, enable, writes, reads, *, put, select, sample, setup=None):
    """Run ``dut``: ``setup`` once, each ``(enable, target, word)`` of ``writes`` a cycle (``put`` drives target and
    word, ``enable`` the write enable: a signal, or a function of the context and the enable), then one read a cycle (``select`` drives its address), sampling each read's
    data ``dut.latency`` cycles after its address; returns the samples in order."""
    got = []

    async def bench(ctx):
        if setup is not None:
            setup(ctx)
        for write, target, word in writes:
            put(ctx, target, word)
            enable(ctx, write) if callable(enable) else ctx.set(enable, write)
            await ctx.tick()
        enable(ctx, 0) if callable(enable) else ctx.set(enable, 0)
        for cycle in range(len(reads) + dut.latency):
            if cycle >= dut.latency:
                got.append(sample(ctx))
            if cycle < len(reads):
                select(ctx, reads[cycle])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def loads(targets, words, rng):
    """Every target written once in a random order, then written again with the write enable low and other data
    (which must not land)."""
    order = rng.permutation(len(targets))
    return ([(1, targets[i], words[i]) for i in order] +
            [(0, targets[i], words[(i + 1) % len(words)]) for i in order])


# --- ActivationMemory: lanes banks, each read every cycle ---------------------------------------------------------

def activation_reads(config):
    """One read a cycle, every bank at a different address; over ``act_depth`` reads every bank reads every word."""
    return [[(cycle + 5 * bank) % config.act_depth for bank in range(config.lanes)]
            for cycle in range(config.act_depth)]


def ref_activation_reads(image, reads):
    """Each read's words, bank by bank, from the golden activation image."""
    return [[image[bank, address].tolist() for bank, address in enumerate(read)] for read in reads]


def rtl_activation_reads(config, reads, *, init=None, writes=()):
    """Each read's words, bank by bank, from the RTL memory built with ``init`` and then written with ``writes``
    (``(enable, (bank, address), packed word)``): the target bank's port has the address and word, every other
    bank's port another address and word, which must not land."""
    dut = ActivationMemory(config, init=init)
    lanes = config.lanes
    target_bank = [0]

    def put(ctx, target, word):
        target_bank[0], address = target
        for bank in range(lanes):
            other = bank != target_bank[0]
            ctx.set(dut.write_address[bank], (address + other * (bank + 1)) % config.act_depth)
            ctx.set(Value.cast(dut.write_data[bank]), word ^ (other * ((1 << 8 * lanes) - 1)))

    def enable(ctx, write):
        for bank in range(lanes):
            ctx.set(dut.write_enable[bank], write and bank == target_bank[0])

    def select(ctx, read):
        for bank, address in enumerate(read):
            ctx.set(dut.read_address[bank], address)

    def sample(ctx):
        return [[ctx.get(dut.read_data[bank][lane]) for lane in range(lanes)] for bank in range(lanes)]

    return simulate(dut, enable, writes, reads, put=put, select=select, sample=sample)


def test_activation_memory_reads_its_init_image():
    images = golden_images(CONFIG, SEED)
    reads = activation_reads(CONFIG)
    assert rtl_activation_reads(CONFIG, reads, init=images.activation) == ref_activation_reads(images.activation, reads)


def test_activation_memory_loaded_through_its_write_port():
    images = golden_images(CONFIG, SEED + 1)
    targets = [(bank, address) for bank in range(CONFIG.lanes) for address in range(CONFIG.act_depth)]
    words = [pack_words(images.activation[bank, address][None], 8)[0] for bank, address in targets]
    writes = loads(targets, words, np.random.default_rng(SEED))
    reads = activation_reads(CONFIG)
    assert rtl_activation_reads(CONFIG, reads, writes=writes) == ref_activation_reads(images.activation, reads)


# --- WeightMemory: one lanes x lanes word a cycle, int8 or decoded from two-bit codes ------------------------------

def ref_weight_reads(image, reads, config, two_bit):
    """Each read's int8 weight word from a golden weight image: word ``address``, or code word ``address`` decoded
    with :data:`CODEBOOK` (``golden.images.read_code_words``, ``golden.layouts.decode_code_words``)."""
    if two_bit:
        return [decode_code_words(read_code_words(image, address, 1, config), CODEBOOK, config)[0].tolist()
                for address in reads]
    return [image[address].tolist() for address in reads]


def rtl_weight_reads(config, reads, *, init=None, writes=(), two_bit=False):
    """Each read's int8 weight word from the RTL memory built with ``init`` and then written with ``writes``
    (``(enable, address, weight word)``); on the engine with the decoder ``two_bit`` (the layer's format) and
    :data:`CODEBOOK` are held on their inputs."""
    dut = WeightMemory(config, init=init)
    lanes = config.lanes

    def setup(ctx):
        if config.weight_code_bits == CODE_BITS:
            ctx.set(dut.two_bit, two_bit)
            for code, value in enumerate(CODEBOOK):
                ctx.set(dut.codebook[code], int(value))

    def put(ctx, address, word):
        ctx.set(dut.load.address, address)
        ctx.set(Value.cast(dut.load.data), word)

    def select(ctx, address):
        ctx.set(dut.address, address)

    def sample(ctx):
        return [[ctx.get(dut.data[row][column]) for column in range(lanes)] for row in range(lanes)]

    return simulate(dut, dut.load.write, writes, reads, put=put, select=select, sample=sample, setup=setup)


#: The weight memory's reads: an int8 engine, and the engine with the decoder reading int8 words and code words.
WEIGHT_READS = pytest.mark.parametrize("config, two_bit", [(CONFIG, False), (TWO_BIT, False), (TWO_BIT, True)],
                                       ids=["int8", "decoder int8 words", "decoder code words"])


def weight_reads(config, two_bit, seed):
    """Every word (or code word: four per word) once, in a random order."""
    count = config.weight_depth * (4 if two_bit else 1)
    return np.random.default_rng(seed).permutation(count).tolist()


@WEIGHT_READS
def test_weight_memory_reads_its_init_image(config, two_bit):
    images = golden_images(config, SEED)
    reads = weight_reads(config, two_bit, SEED)
    got = rtl_weight_reads(config, reads, init=images.weights, two_bit=two_bit)
    assert got == ref_weight_reads(images.weights, reads, config, two_bit)


@WEIGHT_READS
def test_weight_memory_loaded_through_its_load_port(config, two_bit):
    images = golden_images(config, SEED + 1)
    words = pack_words(images.weights.reshape(config.weight_depth, -1), 8)
    writes = loads(list(range(config.weight_depth)), words, np.random.default_rng(SEED))
    reads = weight_reads(config, two_bit, SEED + 1)
    got = rtl_weight_reads(config, reads, writes=writes, two_bit=two_bit)
    assert got == ref_weight_reads(images.weights, reads, config, two_bit)


# --- BiasMemory: lanes int32 biases and their shifts k_c a word -------------------------------------------------

def ref_bias_reads(images, reads):
    """Each read's ``(biases, shifts)`` from the golden bias and shift images."""
    return [(images.bias[address].tolist(), images.channel_shift[address].tolist()) for address in reads]


def rtl_bias_reads(config, reads, *, images=None, writes=()):
    """Each read's ``(biases, shifts)``: the RTL memory's word (built from ``images``, then written with ``writes``,
    ``(enable, address, bias word)``) unpacked by ``golden.layouts.unpack_bias_words``."""
    dut = BiasMemory(config, **({} if images is None else dict(bias=images.bias, channel_shift=images.channel_shift)))

    def put(ctx, address, word):
        ctx.set(dut.load.address, address)
        ctx.set(Value.cast(dut.load.data), word)

    def select(ctx, address):
        ctx.set(dut.address, address)

    words = simulate(dut, dut.load.write, writes, reads, put=put, select=select,
                     sample=lambda ctx: ctx.get(Value.cast(dut.data)))
    bias, channel_shift = unpack_bias_words(words, config)
    return list(zip(bias.tolist(), channel_shift.tolist()))


def test_bias_memory_reads_its_init_image():
    images = golden_images(CONFIG, SEED)
    reads = np.random.default_rng(SEED).permutation(CONFIG.bias_depth).tolist()
    assert rtl_bias_reads(CONFIG, reads, images=images) == ref_bias_reads(images, reads)


def test_bias_memory_loaded_through_its_load_port():
    images = golden_images(CONFIG, SEED + 1)
    words = pack_bias_words(images.bias, images.channel_shift, CONFIG)
    writes = loads(list(range(CONFIG.bias_depth)), words, np.random.default_rng(SEED))
    reads = np.random.default_rng(SEED + 1).permutation(CONFIG.bias_depth).tolist()
    assert rtl_bias_reads(CONFIG, reads, writes=writes) == ref_bias_reads(images, reads)


def test_golden_images_hold_the_extremes():
    images = golden_images(CONFIG, SEED)
    assert images.activation.min() == -128 and images.activation.max() == 127
    assert images.weights.min() == -128 and images.weights.max() == 127
    assert images.bias.min() == INT32_MIN and images.bias.max() == INT32_MAX
    assert images.channel_shift.min() == 0 and images.channel_shift.max() == 15
    codes = np.array([[(word >> 2 * lane) & 3 for lane in range(CONFIG.macs)]
                      for word in read_code_words(images.weights, 0, 4 * CONFIG.weight_depth, CONFIG)])
    assert all(set(codes[quarter::4].reshape(-1).tolist()) == {0, 1, 2, 3} for quarter in range(4))


# --- constructor errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, error, message", [
    (lambda: ActivationMemory(8), TypeError, r"^config must be an NPUConfig, not 8$"),
    (lambda: WeightMemory("lanes=4"), TypeError, r"^config must be an NPUConfig, not 'lanes=4'$"),
    (lambda: BiasMemory(None), TypeError, r"^config must be an NPUConfig, not None$"),
    (lambda: ActivationMemory(CONFIG, init=np.zeros((4, 31, 4), dtype=np.int8)), ValueError,
     r"^init must be an integer array of shape \(4, 32, 4\), not int8 \(4, 31, 4\)$"),
    (lambda: WeightMemory(CONFIG, init=np.zeros((16, 4, 4))), ValueError,
     r"^init must be an integer array of shape \(16, 4, 4\), not float64 \(16, 4, 4\)$"),
    (lambda: BiasMemory(CONFIG, bias=np.zeros((8, 4), dtype=np.int64)), ValueError,
     r"^bias and channel_shift must be given together$"),
    (lambda: BiasMemory(CONFIG, channel_shift=np.zeros((8, 4), dtype=np.int64)), ValueError,
     r"^bias and channel_shift must be given together$"),
    (lambda: BiasMemory(CONFIG, bias=np.zeros((8, 3), dtype=np.int64), channel_shift=np.zeros((8, 4), dtype=np.int64)),
     ValueError, r"^bias must be an integer array of shape \(8, 4\), not int64 \(8, 3\)$"),
    (lambda: BiasMemory(CONFIG, bias=np.zeros((8, 4), dtype=np.int64), channel_shift=np.zeros((8, 4))),
     ValueError, r"^channel_shift must be an integer array of shape \(8, 4\), not float64 \(8, 4\)$"),
], ids=["activation config", "weight config", "bias config", "activation shape", "weight dtype", "bias alone", "channel_shift alone", "bias shape", "channel_shift dtype"])
def test_bad_arguments(build, error, message):
    with pytest.raises(error, match=message) as raised:
        build()
    del raised      # its traceback holds the half-built memory: collect it here, where UnusedElaboratable is ignored
    gc.collect()
