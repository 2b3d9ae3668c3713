"""The quantization job as one function: a model and its data in, an evaluated integer network and a report out.

:func:`run` chains the package's steps (drawn in :mod:`tools.quantizer`) for a :class:`Job`, as ``python
tools/quantize.py`` does: calibration on the first images, evaluation on the others (never the same image for both),
every method evaluated by the integer golden model (golden/network.py) and the float reference by onnxruntime on the
original model; then it writes the deployed network, its memory images, results.json and the report into the output
folder (replaced atomically), and optionally the .tflite model. docs/quantizer.md describes the output folder.
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import time

import numpy as np
from tqdm import tqdm

from cli import atomic_folder, write_file
from golden import network as gnet
from golden.images import write_images

from . import report
from .build import build_network, layer_names
from .calibrate import calibrate, channel_maxima, channel_means
from .equalize import equalize
from .output_error import input_statistics
from .datasets import load_dataset
from .evaluate import classification_metrics, evaluate_all, finite_or_none, float_logits, layer_sqnr
from .frontend import load_graph
from .statistics import compare
from .weights import METHODS as WEIGHT_METHODS, QUANTIZERS

__all__ = ["METHODS", "BIAS_CORRECTION", "EQUALIZATIONS", "REFINEMENTS", "ALL_METHODS", "split_method",
           "DEFAULT_METHODS", "DEFAULT_MODEL", "LITERT_BENCH_IMAGES", "Job", "run", "write_memory_images"]

#: The float reference and the weight quantization methods of tools/quantizer/weights.py.
METHODS = ("float",) + WEIGHT_METHODS

#: Suffix of a weight method with empirical bias correction (:func:`tools.quantizer.build.build_network`), e.g.
#: ``wess-mse+bc``.
BIAS_CORRECTION = "+bc"

#: Suffixes of a weight method applied to a cross-layer equalized float graph (:mod:`tools.quantizer.equalize`),
#: before ``+bc``: ``+cle`` equalized ranges (Nagel et al. 2019), ``+cle-pow2`` then every equalized layer's channel
#: ranges a power of two apart (WESS-aware), e.g. ``wess+cle-pow2+bc``.
EQUALIZATIONS = ("+cle", "+cle-pow2")

#: Suffixes, after any equalization and before ``+bc``, choosing the weights by the layers' output error on the
#: calibration data (:mod:`tools.quantizer.output_error`): ``+oe`` the scales and WESS shifts, ``+ar`` each weight's
#: rounding direction (AdaRound), e.g. ``wess+cle-pow2+oe+ar+bc``.
REFINEMENTS = ("+oe", "+ar")

#: Every method name a job accepts.
ALL_METHODS = METHODS + tuple(method + equalization + correction
                              for equalization, correction in [("", BIAS_CORRECTION)] + [
                                  (e, c) for e in EQUALIZATIONS for c in ("", BIAS_CORRECTION)]
                              for method in WEIGHT_METHODS) + tuple(
    method + equalization + refinement + correction
    for equalization in ("",) + EQUALIZATIONS for refinement in ("+oe", "+ar", "+oe+ar")
    for correction in ("", BIAS_CORRECTION) for method in WEIGHT_METHODS)

#: What a job evaluates by default: the references, the paper's rule, and issue 13's variant (equalized to power-of-two
#: ranges, layer scale, shifts and rounding by layer output error, bias corrected) beside per-channel given the helpers
#: that apply to it, so that the comparison is fair.
DEFAULT_METHODS = ("float", "layer", "channel", "channel+cle+ar+bc", "wess", "wess+cle-pow2+oe+ar+bc")
#: Evaluation images on which ``export_tflite`` compares the exported model with LiteRT's reference kernels.
LITERT_BENCH_IMAGES = 256

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The built-in default model, trained by tools/train_reference.py.
DEFAULT_MODEL = os.path.join(_ROOT, "models", "fmnist_mobilenet.onnx")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """What to quantize, how, and where to write it: the options of ``tools/quantize.py``, resolved.

    Parameters
    ----------
    out : str
        Output folder, replaced atomically.
    model : str or None
        ONNX model; ``None`` is :data:`DEFAULT_MODEL`.
    data : str or None
        Labelled data (:func:`tools.quantizer.datasets.load_dataset`).
    methods : tuple of str
        Methods to evaluate, from :data:`ALL_METHODS`.
    deploy : str
        Weight method of the network written to ``out`` (with the first width, quantizer and first/last variant).
    weight_bits : tuple of int
        Weight widths of the accuracy table, evaluated on every evaluation image.
    weight_quantizers : tuple of str
        From :data:`tools.quantizer.weights.QUANTIZERS`; a two-bit one runs at 2 bits only.
    first_last_bits : tuple
        Below 8 bits, the variants of the first and the last weighted layer: ``None`` (as the others) and/or 8.
    sweep_bits : tuple of int
        More widths for the accuracy-versus-bits plot, evaluated on the first ``sweep_images`` evaluation images.
    sweep_images, shift_bits : int
    calibration : str
        Activation range method (:data:`tools.quantizer.calibrate.METHODS`), with its ``percentile``.
    percentile : float
    calib_images : int or None
        Calibration images, the first ones (default: the dataset's own count, else 20 % of the images, at most 500).
    eval_images : int or None
        Evaluation images, after the calibration ones (default: all the others).
    trace_images : int
        Evaluation images of the per-layer SQNR and saturation statistics.
    batch_size : int or None
        Images per inference batch (default: about 2**20 input values per batch, at most 256).
    jobs : int
        Processes evaluating networks in parallel.
    progress : bool
        Progress bars.
    export_tflite : str or None
        Also write the deployed network as an int8 .tflite model there (:mod:`tools.quantizer.litert`).
    command : str or None
        The command line recorded in results.json.
    memories : dict
        Memory depths of the NPU instance the deployed network's images are written for (``NPUConfig`` fields
        ``act_depth``, ``weight_depth``, ``bias_depth``, ``program_depth``); empty: the default instance's.
    """
    out: str
    model: str = None
    data: str = None
    methods: tuple = DEFAULT_METHODS
    deploy: str = "wess"
    weight_bits: tuple = (8,)
    weight_quantizers: tuple = ("uniform",)
    first_last_bits: tuple = (None,)
    sweep_bits: tuple = ()
    sweep_images: int = 500
    shift_bits: int = 4
    calibration: str = "minmax"
    percentile: float = 99.99
    calib_images: int = None
    eval_images: int = None
    trace_images: int = 16
    batch_size: int = None
    jobs: int = min(2, os.cpu_count() or 1)
    progress: bool = True
    export_tflite: str = None
    command: str = None
    memories: dict = dataclasses.field(default_factory=dict)


def run(job):
    """Run ``job``: load, calibrate, build every network, evaluate, write ``job.out`` (and ``job.export_tflite``).

    Returns the summary written as ``results.json``: ``results`` (one row per evaluated network, float first),
    ``sweep``, ``timing`` and, with ``export_tflite``, ``litert_benchmark``.

    Raises:
        tools.quantizer.frontend.UnsupportedModelError: the model cannot be imported.
        tools.quantizer.build.QuantizationError: a layer cannot be quantized for the NPU.
        ValueError / FileNotFoundError: bad data or options. Nothing is written then.
    """
    progress = job.progress
    started = time.perf_counter()
    timing = {}
    model = job.model or DEFAULT_MODEL
    graph = load_graph(model)
    dataset = load_dataset(graph, job.data, progress=progress)
    total = len(dataset.labels)
    n_cal = job.calib_images if job.calib_images is not None else (
        dataset.calibration_images or max(1, min(500, total // 5)))
    if n_cal >= total:
        raise ValueError(f"--calib-images {n_cal} leaves no evaluation image of the {total}")
    n_eval = min(job.eval_images or total, total - n_cal)
    batch = job.batch_size or max(1, min(256, (1 << 20) // int(np.prod(graph.shapes[graph.input]))))
    cal_images = dataset.images[:n_cal]
    eval_images, eval_labels = dataset.images[n_cal:n_cal + n_eval], dataset.labels[n_cal:n_cal + n_eval]
    timing["load_s"] = time.perf_counter() - started

    t = time.perf_counter()
    reference = float_logits(model, eval_images, batch_size=batch, progress=progress)
    timing["float_s"] = time.perf_counter() - t
    results = []
    if "float" in job.methods:
        results.append(dict(_row(("float", None, None, None)),
                            **classification_metrics(reference, eval_labels, reference),
                            seconds=timing["float_s"]))
    t = time.perf_counter()
    ranges = calibrate(graph, cal_images, method=job.calibration, percentile=job.percentile, batch_size=batch,
                       progress=progress)
    timing["calibration_s"] = time.perf_counter() - t

    quantized = [m for m in job.methods if m != "float"]
    wanted = quantized + [job.deploy]
    # The float graph each method quantizes: the original, or (+cle) the cross-layer equalized one, recalibrated,
    # with its channel means (+bc) and layer input statistics (+oe, +ar) where a method needs them.
    graphs = {"": (graph, ranges, None, None)}
    equalizations = [e for e in EQUALIZATIONS if any(split_method(m)[1] == e for m in wanted)]
    if equalizations:
        t = time.perf_counter()
        maxima = channel_maxima(graph, cal_images, batch_size=batch, progress=progress)
        for equalization in equalizations:
            equalized, _ = equalize(graph, maxima, power_of_two=equalization == "+cle-pow2")
            graphs[equalization] = (equalized, calibrate(equalized, cal_images, method=job.calibration,
                                                         percentile=job.percentile, batch_size=batch,
                                                         progress=progress), None, None)
        timing["equalization_s"] = time.perf_counter() - t
    for equalization, (float_graph, float_ranges, means, statistics) in list(graphs.items()):
        needs = [split_method(m) for m in wanted if split_method(m)[1] == equalization]
        if any(corrected for *_, corrected in needs):
            t = time.perf_counter()
            means = channel_means(float_graph, cal_images, batch_size=batch, progress=progress)
            timing["channel_means_s"] = timing.get("channel_means_s", 0.0) + time.perf_counter() - t
        if any(refinements for _, _, refinements, _ in needs):
            t = time.perf_counter()
            statistics = input_statistics(float_graph, cal_images, batch_size=batch, progress=progress)
            timing["input_statistics_s"] = timing.get("input_statistics_s", 0.0) + time.perf_counter() - t
        graphs[equalization] = float_graph, float_ranges, means, statistics
    # Build every network first (a refused layer stops the run before any long evaluation), then evaluate.
    # A network is keyed (method, weight bits, weight quantizer, first/last layer bits or None).
    deploy_bits = job.weight_bits[0]
    deploy_variant = _variants(deploy_bits, job)[0]
    table, sweep, networks, stats, weight_sqnr = {}, {}, {}, {}, {}
    specs = []
    for bits in job.weight_bits + job.sweep_bits:
        for quantizer, first_last in _variants(bits, job):
            deploying = bits == deploy_bits and (quantizer, first_last) == deploy_variant
            specs += [(method, bits, quantizer, first_last, deploying)
                      for method in quantized + ([job.deploy] if deploying and job.deploy not in quantized else [])]
    t = time.perf_counter()
    built = _build_all(specs, graphs, job, dataset, progress)
    timing["build_s"] = time.perf_counter() - t
    for (method, bits, quantizer, first_last, deploying), (network, layer_stats) in zip(specs, built):
        if deploying:
            networks[method], stats[method] = network, layer_stats
        if method in quantized:
            key = (method, bits, quantizer, first_last)
            (table if bits in job.weight_bits else sweep)[key] = network
            weight_sqnr[key] = {stat["layer"]: finite_or_none(stat["weight_sqnr_db"]) for stat in layer_stats}
    t = time.perf_counter()
    logits = evaluate_all(table, eval_images, batch_size=batch, jobs=job.jobs, progress=progress)
    n_sweep = min(job.sweep_images, n_eval) if sweep else 0
    swept = evaluate_all(sweep, eval_images[:n_sweep], batch_size=batch, jobs=job.jobs, progress=progress)
    timing["golden_s"] = time.perf_counter() - t
    float_correct = np.argmax(reference, 1) == eval_labels
    for key, (values, seconds) in logits.items():
        results.append(dict(_row(key), **classification_metrics(values, eval_labels, reference),
                            seconds=seconds, seconds_per_image=seconds / n_eval, weight_sqnr_db=weight_sqnr[key],
                            **_comparisons(key, logits, eval_labels, float_correct)))
    order = [("float", None, None, None)] + list(table)
    results.sort(key=lambda r: order.index(_key(r)))
    # The bit sweep: every point on the same first n_sweep evaluation images (the table's logits sliced).
    sweep_results = []
    if sweep:
        subset = slice(0, n_sweep)
        for key, (values, _) in sorted(list(logits.items()) + list(swept.items()),
                                       key=lambda item: (-item[0][1], ALL_METHODS.index(item[0][0]),
                                                         QUANTIZERS.index(item[0][2]), item[0][3] or 0)):
            sweep_results.append(dict(_row(key), **classification_metrics(values[subset], eval_labels[subset],
                                                                          reference[subset])))
        if "float" in job.methods:
            sweep_results.insert(0, dict(_row(("float", None, None, None)),
                                         **classification_metrics(reference[subset], eval_labels[subset],
                                                                  reference[subset])))
    t = time.perf_counter()
    n_trace = min(job.trace_images, n_eval)
    traces = {}
    if n_trace:
        # Each network's layers against the float graph it quantizes (equalized tensors are scaled per channel).
        for equalization, (float_graph, *_) in graphs.items():
            traces.update(layer_sqnr(float_graph, {m: n for m, n in networks.items()
                                                   if split_method(m)[1] == equalization},
                                     eval_images[:n_trace], layer_names(graph)))
        traces = {method: traces[method] for method in networks}
    timing["trace_s"] = time.perf_counter() - t
    timing["total_before_writing_s"] = time.perf_counter() - started

    summary = {
        "model": os.path.abspath(model), "model_sha256": _sha256(model), "dataset": dataset.name,
        "classes": int(reference.shape[1]),
        "calibration": {"images": [0, n_cal], "count": n_cal, "method": job.calibration,
                        **({"percentile": job.percentile} if job.calibration == "percentile" else {})},
        "evaluation": {"images": [n_cal, n_cal + n_eval], "count": n_eval},
        "deployed": {"method": job.deploy, "weight_bits": deploy_bits, "weight_quantizer": deploy_variant[0],
                     "first_last_bits": deploy_variant[1], "shift_bits": job.shift_bits},
        "jobs": job.jobs,
        "trace_images": n_trace, "results": results, "timing": timing,
        "sweep": {"images": [n_cal, n_cal + n_sweep], "count": n_sweep, "results": sweep_results},
        "command": job.command,
    }
    if job.export_tflite is not None:
        from .litert import benchmark, export_network, format_benchmark   # an optional dependency: only here
        deployed_network = networks[job.deploy]
        tflite_model = export_network(deployed_network)
        bench = benchmark(deployed_network, gnet.quantize_input(deployed_network,
                                                                eval_images[:min(n_eval, LITERT_BENCH_IMAGES)]))
        summary["litert_benchmark"] = dict(bench, line=format_benchmark(bench))
    deployed = networks[job.deploy]
    if job.memories:
        # The NPU instance the images are written for: the default's memories resized (the network is unchanged).
        deployed = dataclasses.replace(deployed, config=dataclasses.replace(deployed.config, **job.memories))
    _write_outputs(job.out, deployed, summary, stats, traces)
    if job.export_tflite is not None:
        write_file(job.export_tflite, tflite_model)
    return summary


def _build(spec):
    """``(network, layer stats)`` of one ``(method, bits, quantizer, first/last bits, deploying)`` of :func:`run`,
    from the float graphs, job and dataset in ``_BUILD``."""
    method, bits, quantizer, first_last, _ = spec
    job, dataset = _BUILD["job"], _BUILD["dataset"]
    base, equalization, refinements, corrected = split_method(method)
    float_graph, float_ranges, means, statistics = _BUILD["graphs"][equalization]
    return build_network(float_graph, float_ranges, method=base, weight_bits=bits, shift_bits=job.shift_bits,
                         input_range=dataset.input_range, preprocessing=dataset.contract,
                         bias_correction=means if corrected else None, weight_quantizer=quantizer,
                         first_last_bits=first_last, output_statistics=statistics,
                         search_scales="+oe" in refinements, optimise_rounding="+ar" in refinements)


#: What :func:`_build` reads, set by :func:`_build_all` (inherited by forked processes, not pickled).
_BUILD = {}


def _build_all(specs, graphs, job, dataset, progress):
    """:func:`_build` of every spec, in order, in ``job.jobs`` forked processes (in this one for 1): the output-error
    methods (+oe, +ar) take seconds to minutes per network. A refused layer raises its QuantizationError here."""
    _BUILD.update(graphs=graphs, job=job, dataset=dataset)
    try:
        bar = tqdm(total=len(specs), desc="building networks", unit="net", disable=not progress, leave=False)
        if job.jobs == 1 or len(specs) == 1:
            results = []
            for spec in specs:
                results.append(_build(spec))
                bar.update()
            return results
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(job.jobs, mp_context=context) as pool:
            futures = [pool.submit(_build, spec) for spec in specs]
            for _ in concurrent.futures.as_completed(futures):
                bar.update()
            return [future.result() for future in futures]
    finally:
        bar.close()
        _BUILD.clear()


def _variants(bits, job):
    """``(quantizer, first_last_bits)`` of the networks at ``bits`` weight bits: every weight quantizer that runs at
    that width (two-bit ones at 2 only), each with the first/last layer variants (below 8 bits)."""
    ends = job.first_last_bits if bits < 8 else (None,)
    return [(quantizer, first_last) for quantizer in job.weight_quantizers if quantizer == "uniform" or bits == 2
            for first_last in ends]


def split_method(method):
    """``(weight method, equalization suffix or "", refinements, bias corrected)`` of a quantized method of
    :data:`ALL_METHODS`, ``refinements`` the :data:`REFINEMENTS` it names.

    Examples:
        >>> split_method("wess-mse+cle+bc"), split_method("wess+cle-pow2+oe+ar"), split_method("channel+ar+bc")
        (('wess-mse', '+cle', (), True), ('wess', '+cle-pow2', ('+oe', '+ar'), False), ('channel', '', ('+ar',), True))
    """
    corrected = method.endswith(BIAS_CORRECTION)
    method = method.removesuffix(BIAS_CORRECTION)
    refinements = []
    for refinement in reversed(REFINEMENTS):
        if method.endswith(refinement):
            refinements.insert(0, refinement)
            method = method.removesuffix(refinement)
    equalization = next((e for e in EQUALIZATIONS if method.endswith(e)), "")
    return method.removesuffix(equalization), equalization, tuple(refinements), corrected


def _comparisons(key, logits, labels, float_correct):
    """Paired statistics of one table network's top-1 (:func:`tools.quantizer.statistics.compare`): ``vs_float``
    against the float model and ``vs_channel`` against ``channel`` at the same width and variant (if evaluated)."""
    def correct(k):
        return np.argmax(logits[k][0], 1) == labels
    result = {"vs_float": compare(correct(key), float_correct)}
    channel = ("channel",) + key[1:]
    if key[0] != "channel" and channel in logits:
        result["vs_channel"] = compare(correct(key), correct(channel))
    return result


def _row(key):
    """The identifying fields of a results.json row from a network key (``float``: all ``None``)."""
    method, bits, quantizer, first_last = key
    return dict(method=method, weight_bits=bits, weight_quantizer=quantizer, first_last_bits=first_last,
                activation_bits=None if method == "float" else 8)


def _key(row):
    return row["method"], row["weight_bits"], row["weight_quantizer"], row["first_last_bits"]


def write_memory_images(network, directory):
    """Write the RTL's ``$readmemh`` images of ``network`` into ``directory`` (golden/images.py, docs/memory.md).

    Returns the writer's JSON-able summary, or ``{"skipped": reason}`` when nothing is written: for a network with
    per-channel multipliers (the ``channel`` reference method, which the NPU cannot store).
    """
    if any(getattr(layer, "per_channel", False) for layer in network.layers):
        return {"skipped": "per-channel multipliers (the channel reference method) are not storable by the NPU"}
    return write_images(network, directory)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_outputs(out, network, summary, stats, traces):
    with atomic_folder(out) as temporary:
        extra = {key: summary[key] for key in ("model", "model_sha256", "dataset", "calibration", "deployed")}
        images = write_memory_images(network, temporary)
        summary["memory_images"] = images
        manifest = gnet.save(network, temporary, extra=extra, files=sorted(os.listdir(temporary)))
        with open(os.path.join(temporary, "results.json"), "w") as f:
            json.dump(summary, f, indent=1, allow_nan=False)
            f.write("\n")
        report.write_report(temporary, summary=summary, stats=stats, traces=traces, manifest=manifest)
