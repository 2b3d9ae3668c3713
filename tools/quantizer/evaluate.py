"""Evaluation: the float reference, the integer golden model on many images (in worker processes), and metrics.

:func:`float_logits` runs the original ONNX model in onnxruntime; :func:`evaluate` runs an integer network of
:mod:`tools.quantizer.build` in the golden model (``golden.network``) on float images quantized per its contract, and
:func:`evaluate_all` runs several networks in forked processes. :func:`classification_metrics` compares logits with
labels and with the float reference; :func:`layer_sqnr` measures every layer's output against the float IR.
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

__all__ = ["float_logits", "evaluate", "evaluate_all", "classification_metrics", "layer_sqnr"]


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
        sqnr = sqnr_db(reference, logits)
        result["logit_sqnr_db"] = None if not np.isfinite(sqnr) else float(sqnr)
    return result


def layer_sqnr(graph, networks, images, names):
    """Per-layer statistics of each ``{key: network}`` against the float IR on a few images.

    ``names`` maps IR tensors to layer names (:func:`tools.quantizer.build.layer_names`). Returns ``{key: {"sqnr_db":
    {layer: dB or None}, "accumulator_max": ..., "saturation": {tensor: share of int8 values at -128 or 127}}}``.
    """
    runner = session(graph.to_onnx())
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
