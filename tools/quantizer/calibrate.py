"""Activation calibration: per-tensor asymmetric int8 ranges from calibration images.

The float IR (:mod:`tools.quantizer.frontend`) is exported back to ONNX with every tensor as an output and run in
onnxruntime over the calibration images; each tensor's range is then chosen by one of :data:`METHODS`:

``minmax`` (default)
    The smallest and largest value seen.
``percentile``
    The ``100 - p`` and ``p`` percentiles of the values seen (``p = 99.99`` by default), from a 2048-bin histogram.
``mse``
    The range ``[a * min, a * max]`` (``a`` in ``[0.2, 1]``, 81 steps) whose int8 quantization of the observed
    histogram has the smallest mean squared error.

:func:`activation_quantization` turns a range into ``(scale, zero_point)`` the TFLite way: the range is widened to
contain 0 (so that 0, ReLU's floor and the padding value, is exact), ``scale = (max - min) / 255`` rounded UP to
10 significant bits (:func:`weights.snap_scale`: float round-off does not change it, and the range still fits),
``zero_point = round_half_away(-128 - min / scale)`` clamped to int8.
"""

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from golden.requant import round_half_away_from_zero

from .weights import snap_scale

__all__ = ["METHODS", "activation_quantization", "calibrate", "channel_means", "channel_maxima", "session", "BINS"]

#: Range selection methods.
METHODS = ("minmax", "percentile", "mse")

#: Histogram resolution of the percentile and mse methods.
BINS = 2048


def activation_quantization(low, high):
    """``(scale, zero_point)`` of an int8 tensor whose real values span ``[low, high]``.

    Raises:
        ValueError: for a non-finite or inverted range.
    """
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"activation range must be finite with low <= high, not [{low}, {high}]")
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        return 1.0, -128         # an all-zero tensor: any scale represents it; the zero point sits at the floor
    scale = snap_scale((high - low) / 255.0, up=True)
    zero_point = int(np.clip(round_half_away_from_zero(-128.0 - low / scale), -128, 127))
    return scale, zero_point


def session(model, threads=None):
    """An onnxruntime CPU session on a ``ModelProto`` or path (``threads`` intra-op threads, default all)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    content = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    return ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])


def calibrate(graph, images, *, method="minmax", percentile=99.99, batch_size=32, progress=True):
    """Real-value range ``(low, high)`` of the graph input and of every IR tensor over ``images``.

    Args:
        graph: a :class:`tools.quantizer.frontend.Graph`.
        images: float32 NCHW calibration images, already normalised.
        method: one of :data:`METHODS`.
        percentile: ``p`` of the percentile method, in (50, 100].
        batch_size: images per onnxruntime call.
        progress: show tqdm bars on stderr.
    Returns:
        dict tensor name -> ``(low, high)`` floats.
    """
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, not {method!r}")
    if not 50 < percentile <= 100:
        raise ValueError(f"percentile must be in (50, 100], not {percentile!r}")
    if len(images) == 0:
        raise ValueError("calibration needs at least one image")
    runner = session(graph.to_onnx())
    names = [graph.input] + list(graph.tensors)

    def batches(description):
        starts = range(0, len(images), batch_size)
        for start in tqdm(starts, desc=description, unit="batch", disable=not progress, leave=False):
            batch = np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32)
            yield [batch] + runner.run(names[1:], {graph.input: batch})

    low = {name: np.inf for name in names}
    high = {name: -np.inf for name in names}
    for outputs in batches("calibration (ranges)"):
        for name, value in zip(names, outputs):
            low[name] = min(low[name], float(value.min()))
            high[name] = max(high[name], float(value.max()))
    ranges = {name: (low[name], high[name]) for name in names}
    if method == "minmax":
        return ranges

    edges = {name: (min(lo, 0.0), max(hi, 0.0)) for name, (lo, hi) in ranges.items()}
    counts = {name: np.zeros(BINS, dtype=np.int64) for name in names}
    for outputs in batches(f"calibration ({method})"):
        for name, value in zip(names, outputs):
            lo, hi = edges[name]
            if hi > lo:
                index = ((value.reshape(-1).astype(np.float64) - lo) * (BINS / (hi - lo))).astype(np.int64)
                counts[name] += np.bincount(np.clip(index, 0, BINS - 1), minlength=BINS)
    chooser = _percentile_range if method == "percentile" else _mse_range
    return {name: (ranges[name] if edges[name][1] == edges[name][0]
                   else chooser(counts[name], *edges[name], percentile=percentile))
            for name in names}


def _channel_batches(graph, images, batch_size, progress, description):
    """Per batch of ``images``: ``(name, value, axes)`` of the graph input and every IR tensor, ``axes`` the ones
    that are not the channel axis."""
    if len(images) == 0:
        raise ValueError(f"channel {description} need at least one image")
    runner = session(graph.to_onnx())
    names = [graph.input] + list(graph.tensors)
    for start in tqdm(range(0, len(images), batch_size), desc=f"calibration ({description})", unit="batch",
                      disable=not progress, leave=False):
        batch = np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32)
        for name, value in zip(names, [batch] + runner.run(names[1:], {graph.input: batch})):
            yield name, value, (0, 2, 3) if value.ndim == 4 else (0,)


def channel_means(graph, images, *, batch_size=32, progress=True):
    """Mean of every channel of the graph input and of every IR tensor over ``images`` (float64 arrays).

    NCHW tensors average over N, H and W (one value per channel), flat ``(N, F)`` tensors over N. Empirical bias
    correction (``tools.quantize.build_network``) uses them: the expected output error of a layer is its weight
    error times the mean of its input.
    """
    sums, count = {}, {}
    for name, value, axes in _channel_batches(graph, images, batch_size, progress, "means"):
        sums[name] = sums.get(name, 0.0) + value.astype(np.float64).sum(axis=axes)
        count[name] = count.get(name, 0) + value.size // value.shape[1]
    return {name: sums[name] / count[name] for name in sums}


def channel_maxima(graph, images, *, batch_size=32, progress=True):
    """Largest value of every channel of the graph input and of every IR tensor over ``images`` (float64 arrays).

    Cross-layer equalization (:mod:`tools.quantizer.equalize`) uses them to tell the ReLU6 channels whose clamp acts
    (maximum 6) from those where it does not.
    """
    peaks = {}
    for name, value, axes in _channel_batches(graph, images, batch_size, progress, "maxima"):
        peak = value.astype(np.float64).max(axis=axes)
        peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
    return peaks


def _centres(lo, hi):
    step = (hi - lo) / BINS
    return lo + step * (np.arange(BINS) + 0.5)


def _percentile_range(counts, lo, hi, *, percentile):
    cumulative = np.cumsum(counts) / counts.sum()
    tail = 1.0 - percentile / 100.0
    edges = np.linspace(lo, hi, BINS + 1)
    first = int(np.searchsorted(cumulative, tail, side="right"))
    last = int(np.searchsorted(cumulative, 1.0 - tail, side="left"))
    return float(edges[min(first, BINS)]) if tail > 0 else lo, float(edges[min(last + 1, BINS)])


def _mse_range(counts, lo, hi, *, percentile):
    centres = _centres(lo, hi)
    best, best_error = (lo, hi), np.inf
    for factor in np.linspace(1.0, 0.2, 81):
        scale, zero_point = activation_quantization(lo * factor, hi * factor)
        q = np.clip(round_half_away_from_zero(centres / scale) + zero_point, -128, 127)
        error = float(np.sum(counts * (centres - (q - zero_point) * scale) ** 2))
        if error < best_error:
            best, best_error = (lo * factor, hi * factor), error
    return best
