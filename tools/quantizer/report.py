"""The quantizer's report: accuracy table, per-layer statistics (report.md) and PNG plots (matplotlib, Agg).

Written by tools/quantize.py into its output folder; everything here formats numbers that the quantizer measured.
"""

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

__all__ = ["format_table", "markdown_table", "row_label", "write_report", "PLOTS"]

#: The plot files the report writes.
PLOTS = ("channel_ranges.png", "shift_histogram.png", "accuracy_vs_bits.png")

_COLUMNS = ("method", "quantizer", "W", "first/last W", "A", "top-1 %", "top-5 %", "agree %", "logit SQNR dB",
            "images", "Δ vs channel pp [95 % CI]", "McNemar p (channel)", "Δ vs float pp [95 % CI]",
            "McNemar p (float)")


def _comparison_cells(comparison):
    # A paired comparison of results.json (tools.quantizer.statistics.compare) as two cells; "-" where none.
    if comparison is None:
        return "-", "-"
    low, high = comparison["ci95_pp"]
    return (f"{comparison['difference_pp']:+.2f} [{low:+.2f}, {high:+.2f}]", f"{comparison['mcnemar_p']:.3g}")


def _cells(result):
    def number(key, digits=2):
        value = result.get(key)
        return "-" if value is None else f"{value:.{digits}f}"
    return (result["method"], result.get("weight_quantizer") or "-", str(result["weight_bits"] or "float"),
            str(result.get("first_last_bits") or "-"), str(result["activation_bits"] or "float"),
            number("top1"), number("top5"), number("agreement"), number("logit_sqnr_db", 1), str(result["images"]),
            *_comparison_cells(result.get("vs_channel")), *_comparison_cells(result.get("vs_float")))


def row_label(result):
    """A short name of a results row: method, quantizer (two-bit ones in capitals), weight bits, first/last bits."""
    if result["method"] == "float":
        return "float"
    quantizer = result.get("weight_quantizer") or "uniform"
    first_last = result.get("first_last_bits")
    return (f"{result['method']}{'' if quantizer == 'uniform' else ' ' + quantizer.upper()} W{result['weight_bits']}"
            f"{'' if first_last is None else f' (first/last W{first_last})'}")


def format_table(results):
    """The accuracy table as aligned plain text (what the command prints)."""
    rows = [_COLUMNS] + [_cells(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(cell.rjust(width) if i else cell.ljust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))) for row in rows)


def markdown_table(header, rows):
    """A markdown table from a header and rows of cells (converted with ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _db(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.1f}"


def write_report(directory, *, summary, stats, traces, manifest):
    """Write report.md and :data:`PLOTS` into ``directory``.

    Args:
        summary: the results.json dict (results, split, deployed method, timing).
        stats: method -> list of per-layer dicts from :func:`tools.quantize.build_network` (deployed bit width).
        traces: method -> {"sqnr_db", "saturation", "accumulator_max"} per layer, on ``summary["trace_images"]``
            evaluation images.
        manifest: the manifest written for the deployed network.
    """
    deployed = summary["deployed"]
    method, bits = deployed["method"], deployed["weight_bits"]
    methods = [m for m in stats if m in {r["method"] for r in summary["results"]}] or list(stats)
    _plot_channel_ranges(os.path.join(directory, PLOTS[0]), stats[method], method)
    _plot_shift_histogram(os.path.join(directory, PLOTS[1]), stats)
    sweep = summary.get("sweep", {})
    _plot_accuracy(os.path.join(directory, PLOTS[2]), sweep.get("results") or summary["results"])

    cal, ev = summary["calibration"], summary["evaluation"]
    lines = [
        "# Quantization report", "",
        f"Command: `{summary['command']}`", "",
        f"Model: `{summary['model']}` (sha256 `{summary['model_sha256'][:16]}…`), {summary['classes']} classes. "
        f"Data: {summary['dataset']}.",
        f"Calibration: images {cal['images'][0]}–{cal['images'][1] - 1} ({cal['count']}, {cal['method']}); "
        f"evaluation: images {ev['images'][0]}–{ev['images'][1] - 1} ({ev['count']}); no image is in both.",
        "The float row is onnxruntime on the original model; every other row is the integer golden model "
        "(golden/network.py), int8 activations, int8 logits dequantized. *agree* = top-1 equal to the float "
        "model's; *logit SQNR* = logits against the float logits. *Δ vs channel* / *Δ vs float*: top-1 difference "
        "against the per-channel network of the same width (or the float model) on the same images, with the paired "
        "bootstrap 95 % interval (10,000 resamples of the images, seed 0); *McNemar p*: exact two-sided test on the "
        "images exactly one of the two classifies correctly. A difference whose interval contains 0 is a tie.", "",
        "## Accuracy", "",
        markdown_table(_COLUMNS, [_cells(r) for r in summary["results"]]), "",
        f"Written to this folder: the `{method}` network, W{bits}A8"
        f"{_quantizer_note(deployed)}, {deployed['shift_bits']}-bit shifts (manifest.json, network.npz).", "",
    ]
    timing = summary["timing"]
    per_image = [r["seconds_per_image"] for r in summary["results"] if "seconds_per_image" in r]
    if per_image:
        lines += [f"Golden inference: {1000 * min(per_image):.1f}–{1000 * max(per_image):.1f} ms per image "
                  f"(batched, wall time in each of {summary.get('jobs', 1)} parallel processes); float onnxruntime "
                  f"{timing['float_s']:.1f} s, calibration "
                  f"{timing['calibration_s']:.1f} s for the whole split.", ""]
    if "litert_benchmark" in summary:
        lines += [f"Exported .tflite checked against LiteRT's reference kernels (tools/tflite_export.py): "
                  f"{summary['litert_benchmark']['line']}.", ""]

    if sweep.get("results"):
        lines += ["## Weight-bit sweep", "",
                  f"Every method at more weight bit widths, on the first {sweep['count']} evaluation images "
                  f"(images {sweep['images'][0]}–{sweep['images'][1] - 1}); the accuracy-versus-bits plot shows these "
                  "rows.", "",
                  markdown_table(_COLUMNS, [_cells(r) for r in sweep["results"]]), ""]
    lines += ["## Per-layer statistics", "",
              f"W{bits}: weight SQNR (dB) per method; range ratio = max/min of the per-channel max |W| (after batch "
              f"norm folding); k_c = the `{method}` shifts (min/mean/max); clipped = weights clipped by the "
              f"`{method}` rounding; accumulator bound = the static worst case |acc| as a share of INT32_MAX.", ""]
    header = ["layer", "kind", "ch", "range ratio", "k_c min/mean/max"] + [f"SQNR {m}" for m in methods] + [
        "clipped", "acc bound % int32"]
    rows = []
    for index, stat in enumerate(stats[method]):
        shifts = np.asarray(stat["channel_shift"])
        rows.append([stat["layer"], stat["kind"], stat["channels"],
                     "-" if math.isnan(stat["range_ratio"]) else f"{stat['range_ratio']:.1f}",
                     f"{shifts.min()}/{shifts.mean():.1f}/{shifts.max()}"]
                    + [_db(stats[m][index]["weight_sqnr_db"]) for m in methods]
                    + [stat["clipped_weights"], f"{100 * stat['accumulator_bound'] / 2147483647:.2f}"])
    lines += [markdown_table(header, rows), ""]

    sqnr_rows = [r for r in summary["results"] if "weight_sqnr_db" in r]
    if sqnr_rows:
        layers = list(sqnr_rows[0]["weight_sqnr_db"])
        lines += ["## Weight SQNR per layer, every network of the accuracy table", "",
                  "10 log10(Σ W² / Σ (W − Ŵ)²) over each layer's float weights W (batch norm folded) and the "
                  "weights Ŵ its integers stand for, in dB.", "",
                  markdown_table(["layer"] + [row_label(r) for r in sqnr_rows],
                                 [[layer] + [_db(r["weight_sqnr_db"][layer]) for r in sqnr_rows]
                                  for layer in layers]), ""]

    if traces:
        lines += [f"## Per-layer output quality ({summary['trace_images']} evaluation images)", "",
                  "Output SQNR (dB) of every layer's dequantized int8 tensor against the float model's tensor, and "
                  f"the share of `{method}` outputs saturated at the int8 limits (-128 or 127, unless that value is "
                  "the zero point, i.e. real 0); the largest |acc| observed beside the static bound.", ""]
        header = ["tensor"] + [f"SQNR {m}" for m in traces] + [f"saturated % ({method})", "max |acc| observed",
                                                               "static bound"]
        bounds = {stat["layer"]: stat["accumulator_bound"] for stat in stats[method]}
        trace = traces[method]
        rows = [[name] + [_db(traces[m]["sqnr_db"][name]) for m in traces]
                + [f"{100 * trace['saturation'][name]:.2f}", trace["accumulator_max"].get(name, "-"),
                   bounds.get(name, "-")]
                for name in trace["sqnr_db"]]
        lines += [markdown_table(header, rows), ""]

    lines += ["## Plots", "",
              f"![per-channel weight ranges]({PLOTS[0]})", "",
              f"![shift histogram]({PLOTS[1]})", "",
              f"![accuracy versus weight bits]({PLOTS[2]})", "",
              "## Files", "",
              markdown_table(["file", "sha256"], [[name, f"`{info['sha256']}`"]
                                                  for name, info in manifest["files"].items()]), ""]
    images = summary.get("memory_images") or {}
    if "skipped" in images:
        lines += [f"RTL memory images: not written — {images['skipped']}.", ""]
    elif "files" in images:
        lines += ["RTL memory images (`$readmemh`, layout in docs/memory.md): "
                  + ", ".join(f"`{name}`" for name in images["files"]) + ".", ""]
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write("\n".join(lines))


def _quantizer_note(deployed):
    quantizer, first_last = deployed.get("weight_quantizer", "uniform"), deployed.get("first_last_bits")
    note = "" if quantizer == "uniform" else f", two-bit {quantizer.upper()} weights (codebooks)"
    return note + ("" if first_last is None else f", first and last weighted layers W{first_last}")


def _plot_channel_ranges(path, stats, method, count=4):
    worst = sorted((s for s in stats if not math.isnan(s["range_ratio"])), key=lambda s: -s["range_ratio"])[:count]
    figure, axes = plt.subplots(1, max(len(worst), 1), figsize=(4.2 * max(len(worst), 1), 3.6), squeeze=False)
    for axis, stat in zip(axes[0], worst):
        ranges = np.asarray(stat["channel_ranges"])
        shifted = ranges * np.exp2(np.asarray(stat["channel_shift"], dtype=np.float64))
        channels = np.arange(len(ranges))
        axis.semilogy(channels, np.where(ranges > 0, ranges, np.nan), ".", color="0.6", ms=3, label="max |W_c|")
        axis.semilogy(channels, np.where(shifted > 0, shifted, np.nan), ".", color="C0", ms=3,
                      label=f"after {method} shift")
        axis.axhline(ranges.max(), color="C3", lw=0.8, label="layer max")
        axis.set_title(f"{stat['layer']} ({stat['kind']}), ratio {stat['range_ratio']:.0f}", fontsize=9)
        axis.set_xlabel("output channel")
    axes[0][0].set_ylabel("weight range")
    axes[0][0].legend(fontsize=7)
    figure.suptitle("Per-channel weight ranges, before and after the shift (layers with the largest ratio)",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _plot_shift_histogram(path, stats):
    figure, axis = plt.subplots(figsize=(6, 3.6))
    shifted = [m for m in stats if m.startswith("wess")] or list(stats)
    width = 0.8 / len(shifted)
    for i, method in enumerate(shifted):
        counts = np.sum([s["shifts"] for s in stats[method]], axis=0)
        axis.bar(np.arange(len(counts)) + i * width, counts, width, label=method)
    axis.set_xlabel("channel shift k_c")
    axis.set_ylabel("output channels (all layers)")
    axis.set_yscale("log")
    axis.legend()
    axis.set_title("WESS shift histogram", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _plot_accuracy(path, results):
    figure, axis = plt.subplots(figsize=(6, 3.8))
    for result in results:
        if result["method"] == "float":
            axis.axhline(result["top1"], color="k", lw=0.8, ls="--", label="float")
    # Lines: the uniform grid at every width; markers: the two-bit quantizers and the first/last-8-bit variants.
    uniform = [r for r in results if r["weight_bits"] and r.get("weight_quantizer", "uniform") == "uniform"
               and r.get("first_last_bits") is None]
    methods = sorted({r["method"] for r in uniform}, key=[r["method"] for r in uniform].index)
    for method in methods:
        points = sorted((r["weight_bits"], r["top1"]) for r in uniform if r["method"] == method)
        axis.plot(*zip(*points), "o-", label=method)
    for marker, result in zip("sD^vP*Xdp<>h" * 8, [r for r in results if r["weight_bits"] and r not in uniform]):
        axis.plot(result["weight_bits"], result["top1"], marker, label=row_label(result))
    axis.set_xticks(sorted({r["weight_bits"] for r in results if r["weight_bits"]}))
    axis.set_xlabel("weight bits (activations int8)")
    axis.set_ylabel("top-1 %")
    axis.legend(fontsize=8)
    axis.set_title("Accuracy versus weight bits (integer golden model)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
