"""Evaluation: the float reference, the integer golden model on many images (in worker processes), and metrics.

:func:`float_logits` runs the original ONNX model in onnxruntime; :func:`evaluate` runs an integer network of
:mod:`tools.quantizer.build` in the golden model (``golden.network``) on float images quantized per its contract, and
:func:`evaluate_all` runs several networks in forked processes. :func:`classification_metrics` compares logits with
labels and with the float reference; :func:`layer_sqnr` measures every layer's output against the float IR, and
:func:`layer_errors` splits each layer's output error into the parts that bias correction and global pooling remove
(:func:`error_components`; docs/quantizer.md, "Why the bit sweep is not monotonic").
"""

import concurrent.futures
import multiprocessing
import queue
import time

import numpy as np
from tqdm import tqdm

from golden import network as gnet

from .calibrate import session
from .weights import sqnr_db

__all__ = ["float_logits", "evaluate", "evaluate_all", "classification_metrics", "layer_sqnr", "error_components",
           "layer_errors", "finite_or_none"]


def float_logits(model, images, *, batch_size=64, progress=True, description="float (onnxruntime)"):
    """Logits of the ORIGINAL ONNX model (path or ModelProto) in onnxruntime, float32 NCHW images.

    A model exported with a fixed batch size (torch writes 1 unless told otherwise) runs that many images at a time,
    the last batch padded with zero images whose logits are dropped; ``batch_size`` applies to a dynamic batch.
    """
    runner = session(model)
    first = runner.get_inputs()[0]
    fixed = first.shape[0] if isinstance(first.shape[0], int) and first.shape[0] > 0 else None
    step = fixed or batch_size
    out = []
    for start in tqdm(range(0, len(images), step), desc=description, unit="batch", disable=not progress,
                      leave=False):
        batch = np.ascontiguousarray(images[start:start + step], dtype=np.float32)
        count = len(batch)
        if fixed and count < fixed:
            batch = np.concatenate([batch, np.zeros((fixed - count,) + batch.shape[1:], np.float32)])
        out.append(runner.run(None, {first.name: batch})[0][:count])
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


def evaluate_all(networks, images, *, batch_size, jobs, progress):
    """Logits of every ``{key: network}`` on ``images``, in ``jobs`` forked processes (in this one for 1).

    A key is ``(method, weight bits, weight quantizer, first/last layer bits or None)``: it names the progress bar.

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
        result["logit_sqnr_db"] = finite_or_none(sqnr_db(reference, logits))
    return result


def _layer_outputs(graph, networks, images, names):
    """``(key, network, trace, {layer: (float output, dequantized output)})`` of each ``{key: network}`` on
    ``images``, the float outputs of ``graph`` in onnxruntime (NCHW transposed to the network's NHWC)."""
    runner = session(graph.to_onnx())
    floats = dict(zip(graph.tensors, runner.run(list(graph.tensors), {graph.input: images})))
    for key, network in networks.items():
        _, trace = gnet.run(network, gnet.quantize_input(network, images), keep=True)
        pairs = {}
        for ir_name, layer_name in names.items():
            ref = floats[ir_name]
            pairs[layer_name] = (ref.transpose(0, 2, 3, 1) if ref.ndim == 4 else ref,
                                 gnet.dequantize(network, trace.tensors[layer_name], layer_name))
        yield key, network, trace, pairs


def layer_sqnr(graph, networks, images, names):
    """Per-layer statistics of each ``{key: network}`` against the float IR on a few images.

    ``names`` maps IR tensors to layer names (:func:`tools.quantizer.build.layer_names`). Returns ``{key: {"sqnr_db":
    {layer: dB or None}, "accumulator_max": ..., "saturation": {tensor: share of int8 values at -128 or 127}}}``.
    """
    result = {}
    for method, network, trace, pairs in _layer_outputs(graph, networks, images, names):
        per_layer = {name: finite_or_none(sqnr_db(ref, got)) for name, (ref, got) in pairs.items()}
        result[method] = {"sqnr_db": per_layer, "accumulator_max": trace.accumulator_max,
                          "saturation": {name: _saturation(t, network.tensors[name].zero_point)
                                         for name, t in trace.tensors.items() if name != gnet.INPUT}}
    return result


def error_components(reference, approximation):
    """The error ``approximation - reference`` of one layer's output ``(images, [height, width,] channels)`` split
    into three orthogonal parts, each as its power in dB relative to the signal power ``sum reference**2``.

    ``bias_db``: the per-channel mean over all images and positions, the systematic error that bias correction
    removes; ``image_db``: the per-image, per-channel mean over positions less that bias, what a global average pool
    passes on; ``spatial_db``: the rest, which pooling averages away. Their powers add up to the error's, so
    ``sqnr_db = -10 log10(sum 10**(part/10))``. A part of zero power is ``None`` (``spatial_db`` of an ``(images,
    channels)`` output always is), as is ``sqnr_db`` of an exact output.

    Examples:
        >>> import numpy as np
        >>> parts = error_components(np.ones((2, 1, 2, 1)), np.array([1.5, 1.5, 1.75, 1.25]).reshape(2, 1, 2, 1))
        >>> {name: None if value is None else round(value, 2) for name, value in parts.items()}
        {'sqnr_db': 5.51, 'bias_db': -6.02, 'image_db': None, 'spatial_db': -15.05}
    """
    reference = np.asarray(reference, dtype=np.float64)
    sqnr = finite_or_none(sqnr_db(reference, approximation))
    error = np.asarray(approximation, dtype=np.float64) - reference
    if error.ndim < 2:
        raise ValueError(f"need an (images, [positions...,] channels) output, not shape {error.shape}")
    images, channels = error.shape[0], error.shape[-1]
    error = error.reshape(images, -1, channels)
    bias = error.mean(axis=(0, 1))
    per_image = error.mean(axis=1) - bias
    spatial = error - bias - per_image[:, None]
    positions = error.shape[1]
    powers = {"bias_db": images * positions * float(np.sum(bias ** 2)),
              "image_db": positions * float(np.sum(per_image ** 2)), "spatial_db": float(np.sum(spatial ** 2))}
    signal = float(np.sum(reference ** 2))

    def db(power):
        return float(10.0 * np.log10(power / signal)) if power > 0 and signal > 0 else None
    return {"sqnr_db": sqnr,
            **{name: db(power) for name, power in powers.items()}}


def layer_errors(graph, networks, images, names):
    """:func:`error_components` of every layer's output of each ``{key: network}`` against the float IR ``graph`` on
    ``images``: ``{key: {layer: components}}`` (``names`` as for :func:`layer_sqnr`)."""
    return {key: {name: error_components(ref, got) for name, (ref, got) in pairs.items()}
            for key, _, _, pairs in _layer_outputs(graph, networks, images, names)}


def finite_or_none(value):
    """A dB value for JSON, which has no infinity: ``None`` for an infinite one (an exact quantization)."""
    return float(value) if np.isfinite(value) else None


def _saturation(values, zero_point):
    """Share of int8 values at -128 or 127 that do not stand for real 0 (a ReLU's floor is not saturation)."""
    limits = [limit for limit in (-128, 127) if limit != zero_point]
    return float(np.mean(np.isin(values, limits)))
