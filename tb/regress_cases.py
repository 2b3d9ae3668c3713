"""The constrained-random engine regression: its builds, functional coverage, repro bundles and replay.

``golden.stimulus.constrained_random_layer`` draws the layers (each from its own ``(seed, index)``); the cocotb module
``tb/regress_bench.py`` runs them on the emitted Verilog of ``hdl/engine.py``, one build per engine
(:data:`BUILDS`: the int8 engine and the one with the two-bit decoder, ``weight_code_bits`` 2, which runs int8 and
two-bit layers); ``tb/test_regress.py`` and
``tools/regress.py`` launch it with :func:`run_regression`. A layer that fails writes a repro bundle
(:func:`write_bundle`) that :func:`replay` runs again on its own.
"""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from golden.config import NPUConfig
from golden.descriptor import KINDS, LayerDescriptor
from golden.hexfile import read_hex, write_hex
from golden.images import MemoryImages, load_activation
from golden.layouts import CODE_BITS, UNWEIGHTED, activation_location, groups, pack_bias_words, pack_words, \
    unpack_bias_words, unpack_words
from golden.requant import multiply_by_quantized_multiplier, saturate_int32
from golden.stimulus import TABLES
from hdl.engine import Engine
from sim import run_bench
from tools.quantizer.report import markdown_table

__all__ = ["BUILDS", "TWO_BIT_SHARE", "BUNDLES", "regress_config", "layer_coverage", "merge_coverage",
           "REQUIRED_BINS", "coverage_table", "output_words", "compare_memory", "write_bundle", "read_bundle", "replay_command",
           "run_regression", "replay"]

#: The regression's engines: name -> ``weight_code_bits``.
BUILDS = {"int8": 8, "two_bit": CODE_BITS}
#: Share of the outputs run on the two-bit engine.
TWO_BIT_SHARE = 0.25
#: Where failing layers leave their repro bundles (``fail-<seed>-<build>-<index>``).
BUNDLES = Path("build/regress")
_REPO = Path(__file__).resolve().parents[1]
#: Kinds with a free window (their kernel bins are by size).
WINDOWED = ("conv", "depthwise", "max_pool")


def regress_config(weight_code_bits):
    """The regression's engine: the default instance with 1024-word activation banks (the whole memory is read back
    after every layer, 8,192 words)."""
    return NPUConfig(act_depth=1024, weight_code_bits=weight_code_bits)


def _tie_and_saturation(case):
    # Per output: on a rounding tie (of either step) and saturated by the clamp.
    d = case.descriptor
    acc = case.acc
    shift = d.shift - np.asarray(case.channel_shift, dtype=np.int64)
    left, right = np.maximum(shift, 0), np.minimum(np.maximum(-shift, 0), 32)
    product = saturate_int32(acc << left) * d.multiplier
    high = (product + (1 << 30)) >> 31
    half = (np.int64(1) << right) >> 1
    tie = (d.multiplier != 0) & ((product % (1 << 31) == 1 << 30) | ((right > 0) & (high % (1 << right) == half)))
    unclamped = multiply_by_quantized_multiplier(acc, d.multiplier, shift) + d.output_zero_point
    return tie, (unclamped < d.qmin) | (unclamped > d.qmax)


def _clamp_bin(d):
    if (d.qmin, d.qmax) == (-128, 127):
        return "full"
    if d.qmin == d.output_zero_point:
        return "relu" if d.qmax == 127 else "relu6"
    return "narrow"


def _table_bin(table):
    # Which of golden.stimulus.TABLES a layer's table is.
    if (table == table[0]).all():
        return "constant"
    return "identity" if (table == np.arange(-128, 128)).all() else "random"


def _share_bin(share):
    return "none" if share == 0 else "< 50 %" if share < 0.5 else ">= 50 %"


def layer_coverage(case, config):
    """The functional-coverage bins a layer hits: ``{"dimension: bin": outputs}``.

    Bins: kind, kernel, stride, padding, input zero point (extremes / middle), clamp, multiplier quarter of its
    octave, layer shift sign, channel counts multiple of the lanes, two-bit, the layer's saturation and tie shares,
    the engine (with the two-bit decoder or without), the activation table (random, identity, constant or none), the
    output's banks (turned by ``out_skew`` or not), an add's inputs (one tensor or two) and input rescalings
    (multiplier 0, shift -31), and per channel shift k_c the outputs of its *live* channels (at least 4 distinct
    values, 2 for outputs of fewer than 8 pixels): k_c 15 must spread its outputs, not give the constant zero point.
    """
    d = case.descriptor
    outputs = int(case.expected.size)
    tie, saturated = _tie_and_saturation(case)
    top, bottom, left, right = d.padding
    bins = {
        f"kind: {d.kind}": outputs,
        f"kernel: {d.kernel_height}x{d.kernel_width}" if d.kind in WINDOWED and d.kernel_height ==
        d.kernel_width else "kernel: add elementwise" if d.kind == "add" else
        f"kernel: {d.kind} {'rectangular' if d.kind in WINDOWED else 'whole input'}": outputs,
        f"stride: {d.stride_height}x{d.stride_width}": outputs,
        "padding: " + ("none" if not any(d.padding) else "symmetric" if top == bottom and left == right
                       else "asymmetric"): outputs,
        "input zero point: " + {-128: "-128", 127: "127"}.get(d.input_zero_point, "middle"): outputs,
        f"clamp: {_clamp_bin(d)}": outputs,
        "multiplier: " + ("0" if not d.multiplier else f"quarter {(d.multiplier - (1 << 30)) * 4 >> 30}"): outputs,
        "layer shift: " + ("< 0" if d.shift < 0 else "0" if d.shift == 0 else "> 0"): outputs,
        "in channels multiple of lanes: " + ("yes" if d.in_channels % config.lanes == 0 else "no"): outputs,
        "out channels multiple of lanes: " + ("yes" if d.out_channels % config.lanes == 0 else "no"): outputs,
        "two-bit: " + (d.kind if d.weight_format else "no"): outputs,
        f"engine: {'two-bit decoder' if config.weight_code_bits == CODE_BITS else 'int8'}": outputs,
        f"saturation share: {_share_bin(saturated.mean())}": outputs,
        f"tie share: {_share_bin(tie.mean())}": outputs,
        f"activation table: {_table_bin(case.table) if d.table else 'none'}": outputs,
        f"output banks: {'turned (out_skew)' if d.out_skew else 'plain'}": outputs,
    }
    if tie.any():
        for sign, mask in (("negative", case.acc < 0), ("positive", case.acc >= 0)):
            if (tie & mask).any():
                bins[f"tie outputs: acc {sign}"] = int((tie & mask).sum())
    if saturated.any():
        bins["saturated outputs"] = int(saturated.sum())
    if d.kind == "add":
        bins["add: input 2 is input 1"
             if (d.in2_base, d.in2_row_pitch) == (d.in_base, d.in_row_pitch) else "add: two tensors"] = outputs
        for name in ("shift1", "shift2"):
            multiplier = getattr(d, name.replace("shift", "multiplier"))
            rescaling = "multiplier 0" if not multiplier else "shift -31" if getattr(d, name) == -31 else "other"
            bins[f"add input rescaling: {rescaling}"] = outputs
    if d.kind not in UNWEIGHTED:
        pixels = d.out_height * d.out_width
        for channel in range(d.out_channels):
            values = case.expected[..., channel]
            if len(np.unique(values)) >= (4 if pixels >= 8 else 2):
                key = f"live k_c: {int(case.channel_shift[channel]):2d}"
                bins[key] = bins.get(key, 0) + pixels
    return bins


def merge_coverage(total, bins):
    """Add one layer's bins to ``total`` (``{"dimension: bin": [layers, outputs]}``); returns ``total``."""
    for key, outputs in bins.items():
        layers, count = total.get(key, (0, 0))
        total[key] = [layers + 1, count + outputs]
    return total


#: Bins every default run must hit (``tb/test_regress.py``): both engines, each kind, each weighted kind two-bit and
#: int8, every live k_c, the zero-point extremes, every clamp, saturation- and tie-heavy layers, ties of both signs,
#: both strides and asymmetric padding, channel counts on and off the lanes, each kind of activation table and none,
#: output banks turned and not, an add of a tensor to itself and add input rescalings of multiplier 0 and of shift -31.
REQUIRED_BINS = (
    *(f"kind: {kind}" for kind in KINDS),
    *(f"activation table: {table}" for table in (*TABLES, "none")),
    "output banks: turned (out_skew)", "output banks: plain",
    *(f"two-bit: {kind}" for kind in ("conv", "depthwise", "fully_connected", "no")),
    "engine: int8", "engine: two-bit decoder",
    "add: input 2 is input 1", "add: two tensors", "add input rescaling: multiplier 0",
    "add input rescaling: shift -31",
    *(f"live k_c: {k:2d}" for k in range(16)),
    "input zero point: -128", "input zero point: 127", "input zero point: middle",
    *(f"clamp: {clamp}" for clamp in ("full", "relu", "relu6", "narrow")),
    "saturation share: >= 50 %", "tie share: >= 50 %", "tie outputs: acc negative", "tie outputs: acc positive",
    "stride: 2x2", "stride: 1x2", "stride: 2x1", "padding: asymmetric", "layer shift: < 0", "layer shift: > 0",
    "in channels multiple of lanes: yes", "in channels multiple of lanes: no",
    "out channels multiple of lanes: yes", "out channels multiple of lanes: no",
    *(f"kernel: {k}x{k}" for k in range(1, 8)),
)


def coverage_table(total):
    """The coverage as a markdown table (dimension, bin, layers, outputs); bins of :data:`REQUIRED_BINS` never hit
    are listed with 0."""
    total = {key: total.get(key, [0, 0]) for key in (*total, *REQUIRED_BINS)}
    return markdown_table(("dimension", "bin", "layers", "outputs"),
                          [(*key.split(": ", 1), f"{layers:,}", f"{outputs:,}")
                           for key, (layers, outputs) in sorted(total.items())])


def output_words(descriptor, config):
    """``(banks, addresses)`` of the output tensor's words, arrays ``(Ho, Wo, groups)``."""
    d = descriptor
    y, x, g = np.meshgrid(np.arange(d.out_height), np.arange(d.out_width), np.arange(groups(d.out_channels, config)),
                          indexing="ij")
    return activation_location(y, x, g, base=d.out_base, pitch=d.out_row_pitch, width=d.out_width, config=config,
                               skew=d.out_skew)


def compare_memory(before, after, descriptor, config):
    """The output tensor read out of the activation image ``after``, and the stray words: ``(bank, address)`` of every
    word outside the output tensor that differs from ``before`` (the padding lanes of output words may hold
    anything, docs/memory.md section 1)."""
    banks, addresses = output_words(descriptor, config)
    changed = np.any(after != before, axis=2)
    changed[banks, addresses] = False
    got = load_activation(after, descriptor.out_shape, base=descriptor.out_base, pitch=descriptor.out_row_pitch,
                          config=config, skew=descriptor.out_skew)
    return got, [tuple(map(int, word)) for word in np.argwhere(changed)]


def write_bundle(directory, config, case, images, got, message):
    """A failing layer's repro bundle in ``directory``: ``config.json``, ``descriptor.json`` (a two-bit layer's
    codebook in it), ``activation.hex`` (the whole activation memory before the layer, bank after bank),
    ``weights.hex`` (weight words: int8, or code words four to a word), ``bias.hex``, ``tables.hex`` (activation
    tables, one 8-bit entry per line), ``expected.npy``, ``actual.npy`` and ``mismatch.txt``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lanes = config.lanes
    (directory / "config.json").write_text(config.to_json() + "\n")
    (directory / "descriptor.json").write_text(json.dumps(
        {**dataclasses.asdict(case.descriptor), "name": case.name}, indent=1) + "\n")
    write_hex(directory / "activation.hex", pack_words(images.activation.reshape(-1, lanes), 8), 8 * lanes)
    write_hex(directory / "weights.hex", pack_words(images.weights.reshape(len(images.weights), -1), 8), 8 * config.macs)
    write_hex(directory / "bias.hex", pack_bias_words(images.bias, images.channel_shift, config),
              lanes * (config.acc_bits + config.shift_bits))
    write_hex(directory / "tables.hex", [int(entry) & 0xFF for entry in images.tables.reshape(-1)], 8)
    np.save(directory / "expected.npy", case.expected)
    np.save(directory / "actual.npy", got)
    (directory / "mismatch.txt").write_text(message + "\n")


def read_bundle(directory):
    """``(config, name, descriptor, images)`` of a bundle :func:`write_bundle` wrote."""
    directory = Path(directory)
    config = NPUConfig.from_json((directory / "config.json").read_text())
    fields = json.loads((directory / "descriptor.json").read_text())
    name = fields.pop("name")
    lanes = config.lanes
    images = MemoryImages.empty(config)
    images.activation[:] = unpack_words(read_hex(directory / "activation.hex"), 8, lanes).reshape(
        images.activation.shape)
    images.weights[:] = unpack_words(read_hex(directory / "weights.hex"), 8, config.macs).reshape(images.weights.shape)
    images.bias[:], images.channel_shift[:] = unpack_bias_words(read_hex(directory / "bias.hex"), config)
    images.tables[:] = unpack_words(read_hex(directory / "tables.hex"), 8, 1).reshape(images.tables.shape)
    return config, name, LayerDescriptor(**fields), images


def replay_command(directory):
    """The one command that runs a bundle's layer again."""
    return f"python tools/regress.py --replay {directory}"


def run_regression(outputs, seed, *, bundles=BUNDLES, sim="verilator", report=print):
    """Run the regression: at least ``outputs`` outputs compared, :data:`TWO_BIT_SHARE` of them on the two-bit engine.

    Returns ``{"builds": {name: summary}, "coverage": {...}}``; each summary has ``layers``, ``outputs``,
    ``cycles``, ``failures`` (messages with their bundles), ``build_seconds`` and ``run_seconds``.
    """
    results, coverage = {}, {}
    for name, code_bits in BUILDS.items():
        config = regress_config(code_bits)
        target = int(np.ceil(outputs * (TWO_BIT_SHARE if code_bits == CODE_BITS else 1 - TWO_BIT_SHARE)))
        started = time.perf_counter()
        summary = run_bench(Engine(config), name=f"regress_{name}", test_module="regress_bench", sim=sim,
                            args=dict(config=config.to_json(), seed=seed, outputs=target, build=name,
                                      bundles=str(Path(bundles).resolve())))
        summary["run_seconds"] = time.perf_counter() - started - summary["build_seconds"]
        for key, (layers, count) in summary.pop("coverage").items():
            old = coverage.get(key, (0, 0))
            coverage[key] = [old[0] + layers, old[1] + count]
        results[name] = summary
        report(f"regress {name} seed {seed}: {summary['outputs']:,} outputs of {summary['layers']:,} layers, "
               f"{len(summary['failures'])} failing, {summary['cycles']:,} cycles; build "
               f"{summary['build_seconds']:.0f} s, run {summary['run_seconds']:.0f} s")
    return {"builds": results, "coverage": coverage}


def replay(directory, *, sim=None):
    """Run a bundle's layer again on an engine built with the bundle's memories; returns the bench's summary."""
    config, _, _, images = read_bundle(directory)
    return run_bench(Engine(config, images=images), name="regress_replay",
                     test_module="regress_bench", sim=sim,
                     args=dict(config=config.to_json(), replay=str(Path(directory).resolve())))
