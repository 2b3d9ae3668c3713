"""Design table, empirical SQNR and plots of the two-bit quantizers UQ, SPTQ and MSPTQ (docs/two_bit.md).

    python tools/design_2bit.py [--out build/two_bit] [--model PATH.onnx | --no-model] [--samples N] [--seed S]

Prints the minimum-distortion design of each quantizer for a unit-variance Laplacian source (tools/quantizer/two_bit.py)
beside the Lloyd-Max optimum, the SQNR under variance mismatch, the SQNR measured on sampled Laplacian data and on the
Conv and Gemm weights of an ONNX model (as the quantizer's front end reads them: batch norm folded; each layer
normalised by its standard deviation), and saves the transfer characteristics and the SQNR-versus-mismatch curves as
PNG files.
"""

import argparse
import dataclasses
import math
import os
import sys

import numpy as np
import onnx

from cli import OneLineErrorParser, int_at_least
from tools.quantizer.frontend import Conv, FullyConnected, UnsupportedModelError, load_graph
from tools.quantizer.two_bit import (QUANTIZERS, distortion_numerical, design, empirical_sqnr_db, lloyd_max,
                                     optimal_delta_numerical, sqnr_mismatch_db)

__all__ = ["DEFAULT_MODEL", "LayerWeights", "read_layer_weights", "main"]

DEFAULT_MODEL = "/work/shared/models/mobilenet_v2_imagenet.onnx"
MISMATCH_DB = np.linspace(-20.0, 20.0, 401)


class InputError(Exception):
    """Bad input from the command line: reported in one line, exit code 2."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerWeights:
    """Weights (float64) of one Conv or fully connected layer, batch norm folded in as the quantizer folds it."""
    name: str
    kind: str
    weights: np.ndarray


def read_layer_weights(path):
    """Weights of every Conv and Gemm (fully connected) layer of an ONNX model, in graph order.

    The model is read by the quantizer's front end (:func:`tools.quantizer.frontend.load_graph`), so the weights are
    the ones the quantizer quantizes: a BatchNormalization after a Conv folded in (in float64, stored as float32), a
    Gemm's ``alpha`` and transposition applied.

    Raises
    ------
    InputError
        If the file is missing or not a readable ONNX model, the front end refuses the model, or it holds no Conv/Gemm
        weight.
    """
    if not os.path.isfile(path):
        raise InputError(f"model file not found: {path}")
    try:
        model = onnx.load(path)
    except Exception as error:  # protobuf, external-data and dtype errors all mean "not a usable model"
        raise InputError(f"cannot read ONNX model {path}: {type(error).__name__}: {error}") from None
    try:
        graph = load_graph(model)
    except UnsupportedModelError as error:
        raise InputError(f"cannot read ONNX model {path}: {error}") from None
    layers = [LayerWeights(name=node.name, kind="gemm" if isinstance(node, FullyConnected)
                           else "depthwise" if node.depthwise else "conv", weights=node.weights.astype(np.float64))
              for node in graph.nodes if isinstance(node, (Conv, FullyConnected))]
    if not layers:
        raise InputError(f"no Conv or Gemm weight initializers in {path}")
    return layers


def _parser():
    parser = OneLineErrorParser(prog="design_2bit", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="build/two_bit",
                        help="directory for the plots transfer.png and sqnr_mismatch.png (created)")
    parser.add_argument("--model", default=None,
                        help=f"ONNX model whose Conv/Gemm weights are quantized per layer; default {DEFAULT_MODEL} "
                             "when it exists, else this part is skipped")
    parser.add_argument("--no-model", action="store_true", help="skip the network-weight SQNR table")
    parser.add_argument("--samples", type=int_at_least(1, "positive"), default=1_000_000,
                        help="number of Laplacian samples for the empirical SQNR")
    parser.add_argument("--seed", type=int_at_least(0, "non-negative"), default=0, help="seed of the Laplacian samples")
    return parser


def _design_table(designs, reference):
    lines = [f"{'quantizer':9} {'delta_opt':>9} {'thresholds (+)':>18} {'levels (+)':>18} {'levels/(Δ/2)':>12} "
             f"{'support':>17} {'D_g':>8} {'D_o':>8} {'D':>8} {'SQNR dB':>8}"]
    for d in designs:
        q = QUANTIZERS[d.name]
        lines.append(f"{d.name:9} {d.delta:9.5f} {f'0, {d.thresholds[2]:.5f}':>18} "
                     f"{f'{d.levels[2]:.5f}, {d.levels[3]:.5f}':>18} "
                     f"{'±' + str(q.multiples[0]) + ', ±' + str(q.multiples[1]):>12} "
                     f"{f'±{d.support[1]:.5f} ({q.support:g}Δ)':>17} {d.granular_distortion:8.5f} "
                     f"{d.overload_distortion:8.5f} {d.distortion:8.5f} {d.sqnr_db:8.4f}")
    lines.append(f"{'Lloyd-Max':9} {'-':>9} {f'0, {reference.thresholds[2]:.5f}':>18} "
                 f"{f'{reference.levels[2]:.5f}, {reference.levels[3]:.5f}':>18} {'-':>12} {'-':>17} {'-':>8} "
                 f"{'-':>8} {reference.distortion:8.5f} {reference.sqnr_db:8.4f}")
    return lines


def _check_lines(designs):
    lines = [f"{'quantizer':9} {'delta iterative':>16} {'delta minimize':>16} {'D closed form':>15} "
             f"{'D quad':>15} {'|difference|':>12}"]
    for d in designs:
        q = QUANTIZERS[d.name]
        numeric = distortion_numerical(q, d.delta)
        lines.append(f"{d.name:9} {d.delta:16.10f} {optimal_delta_numerical(q):16.10f} {d.distortion:15.12f} "
                     f"{numeric.total:15.12f} {abs(numeric.total - d.distortion):12.1e}")
    return lines


def _mismatch_lines(designs):
    points = np.arange(-20, 21, 5)
    lines = ["SQNR (dB) of the unit-variance design on a source of variance 10^(mismatch/10):",
             f"{'quantizer':9} " + " ".join(f"{p:+6d} dB" for p in points)]
    for d in designs:
        values = sqnr_mismatch_db(QUANTIZERS[d.name], points, delta=d.delta)
        lines.append(f"{d.name:9} " + " ".join(f"{v:9.4f}" for v in values))
    return lines


def _laplacian_lines(designs, samples, seed):
    x = np.random.default_rng(seed).laplace(0.0, 1 / math.sqrt(2), samples)   # variance 2 b^2 = 1
    lines = [f"Sampled Laplacian source: {samples} samples, seed {seed}, sample variance {np.var(x):.5f}",
             f"{'quantizer':9} {'D theory':>9} {'D sampled':>10} {'std err':>8} {'SQNR theory':>12} "
             f"{'SQNR sampled':>13}"]
    for d in designs:
        q = QUANTIZERS[d.name]
        squared = (x - q.quantize(x, d.delta)) ** 2
        lines.append(f"{d.name:9} {d.distortion:9.5f} {np.mean(squared):10.5f} "
                     f"{np.std(squared) / math.sqrt(samples):8.5f} {d.sqnr_db:12.4f} "
                     f"{empirical_sqnr_db(x, q, d.delta):13.4f}")
    return lines


def _weight_lines(path, layers, designs):
    from tqdm import tqdm
    lines = [f"Network weights of {path}: {len(layers)} Conv/Gemm layers (BN folded); "
             "delta = delta_opt * std of each layer",
             f"{'#':>3} {'layer':48} {'kind':9} {'weights':>8} {'std':>9} {'kurt':>6} "
             + " ".join(f"{d.name:>7}" for d in designs)]
    rows = []
    for i, layer in enumerate(tqdm(layers, desc="layers", unit="layer", leave=False, file=sys.stderr)):
        w = layer.weights.ravel()
        std = float(np.std(w))
        if std == 0:
            lines.append(f"{i:3d} {layer.name[-48:]:48} {layer.kind:9} {w.size:8d} all weights equal: skipped")
            continue
        kurtosis = float(np.mean((w - w.mean()) ** 4) / std ** 4 - 3)
        sqnrs = [empirical_sqnr_db(w, QUANTIZERS[d.name], d.delta * std) for d in designs]
        rows.append(sqnrs)
        lines.append(f"{i:3d} {layer.name[-48:]:48} {layer.kind:9} {w.size:8d} {std:9.5f} {kurtosis:6.2f} "
                     + " ".join(f"{s:7.3f}" for s in sqnrs))
    mean = np.mean(rows, axis=0)
    lines.append(f"{'':3} {'mean over layers (SQNR dB)':48} {'':9} {'':8} {'':9} {'':6} "
                 + " ".join(f"{s:7.3f}" for s in mean))
    wins = np.bincount(np.argmax(rows, axis=1), minlength=len(designs))
    lines.append(f"{'':3} {'layers where this quantizer is best':48} {'':9} {'':8} {'':9} {'':6} "
                 + " ".join(f"{n:7d}" for n in wins))
    lines.append(f"{'':3} {'Laplacian theory (SQNR dB)':48} {'':9} {'':8} {'':9} {3.0:6.2f} "
                 + " ".join(f"{d.sqnr_db:7.3f}" for d in designs))
    return lines


def _save_plots(out, designs):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    os.makedirs(out, exist_ok=True)
    paths = []
    x = np.linspace(-3.5, 3.5, 7001)
    fig, axes = plt.subplots(1, len(designs), figsize=(4.2 * len(designs), 4.2), sharey=True)
    for ax, d in zip(axes, designs):
        q = QUANTIZERS[d.name]
        ax.plot(x, x, color="0.7", linestyle="--", linewidth=1, label="y = x")
        ax.plot(x, q.quantize(x, d.delta), linewidth=2, label=f"Q(x), Δ = {d.delta:.4f}")
        for edge in d.support:
            ax.axvline(edge, color="tab:red", linestyle=":", linewidth=1)
        ax.axvspan(d.support[1], x[-1], color="tab:red", alpha=0.08, label="overload region")
        ax.axvspan(x[0], d.support[0], color="tab:red", alpha=0.08)
        ax.set_title(f"{d.name}: levels ±{q.multiples[0]}, ±{q.multiples[1]} × Δ/2")
        ax.set_xlabel("x (unit-variance Laplacian)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("Q(x)")
    fig.tight_layout()
    paths.append(os.path.join(out, "transfer.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for d in designs:
        ax.plot(MISMATCH_DB, sqnr_mismatch_db(QUANTIZERS[d.name], MISMATCH_DB, delta=d.delta), label=d.name)
    ax.axvline(0, color="0.6", linewidth=1)
    ax.set_xlabel("variance mismatch 10 log10(σ² / σ²_design) (dB)")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title("Two-bit quantizers designed for σ² = 1, Laplacian source")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(out, "sqnr_mismatch.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def main(argv=None):
    """Run the command; returns the exit status (2 on bad input)."""
    args = _parser().parse_args(argv)
    try:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise InputError(f"--out {args.out} exists and is not a directory")
        model = args.model
        if args.no_model:
            if model is not None:
                raise InputError("--model and --no-model exclude each other")
        elif model is None and os.path.isfile(DEFAULT_MODEL):
            model = DEFAULT_MODEL
        layers = None if model is None else read_layer_weights(model)

        designs = [design(q) for q in QUANTIZERS.values()]
        blocks = [
            ["Two-bit quantizers, minimum-MSE design for a unit-variance Laplacian source (positive half shown)"]
            + _design_table(designs, lloyd_max()),
            ["Optimal step two ways and total distortion two ways (at the iterative step)"] + _check_lines(designs),
            _mismatch_lines(designs),
            _laplacian_lines(designs, args.samples, args.seed),
        ]
        if layers is not None:
            blocks.append(_weight_lines(model, layers, designs))
        elif not args.no_model:
            blocks.append([f"Network weights: {DEFAULT_MODEL} not found and no --model given: skipped"])
        try:
            paths = _save_plots(args.out, designs)
        except OSError as error:
            raise InputError(f"cannot write plots into {args.out}: {error}") from None
        print("\n\n".join("\n".join(block) for block in blocks))
        print("\nPlots: " + ", ".join(paths))
    except InputError as error:
        print(f"design_2bit: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
