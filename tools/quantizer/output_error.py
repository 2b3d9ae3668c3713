"""Weight quantization judged by the layer's output on calibration data, not by the weights alone.

A layer's output error on an input patch ``x`` is ``(W_q - W) x`` per output channel, so over the calibration data
its mean square is ``e_c^T G e_c`` with ``e_c`` the channel's weight error and ``G = E[x x^T]`` the second moment of
the layer's input patches (:func:`input_statistics`: sampled patches of the float graph's tensors, the layout of
the weights ``(I/groups, KH, KW)``, one matrix per group). With empirical bias correction (``+bc``), which removes
the mean ``e_c^T E[x]``, what remains is judged with the covariance ``G - E[x] E[x]^T`` instead. Two refinements of
:func:`tools.quantizer.weights.quantize_weights` use it (Nagel et al. 2020, "Up or down? Adaptive rounding"):

``+oe`` (:func:`output_error_scales`)
    The scales by output error: the layer scale ``s = snap(a max_c r_c / qmax)`` (``a`` in :data:`SCALE_FACTORS`)
    and, for ``wess``, each ``k_c`` among the paper's shift at that scale and the two above it (clipping allowed);
    for ``channel`` each channel's own factor; the smallest ``sum_c e_c^T G e_c`` wins (ties keep the larger scale,
    the smaller shift).
``+ar`` (:func:`adaround`)
    Each weight rounded down or up (never further) to minimise ``e_c^T G e_c``: AdaRound's rectified-sigmoid
    relaxation with its annealed regulariser, optimised by Adam for :data:`ITERATIONS` steps, all channels of a layer
    at once; a channel whose hard rounding ends worse than nearest rounding on the calibration data keeps nearest.

Both keep the NPU's storage (one layer scale, 4-bit ``k_c``, int8 weights; ``channel`` stays the per-channel
reference): only which integers and which scale are chosen changes. ``G`` is damped by :data:`DAMPING` times its
mean diagonal so that a layer with fewer samples than inputs (the classifier: one patch per image) is not fitted to
the directions its calibration data never visits.
"""

import dataclasses

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from . import frontend as ir
from .calibrate import session
from .weights import (WeightQuantization, channel_ranges, qmax_for_bits, quantize_weights, round_to_grid,
                      snap_scale, wess_shifts)

__all__ = ["SCALE_FACTORS", "EXTRA_SHIFTS", "ITERATIONS", "DAMPING", "POSITIONS", "InputStatistics",
           "input_statistics", "output_error", "output_error_scales", "adaround", "refine_weights"]

#: Factors ``a`` of the largest range that ``+oe`` tries as the layer (or channel) scale's ``a r / qmax``.
SCALE_FACTORS = tuple(1.0 - 0.05 * j for j in range(9))
#: Shifts ``+oe`` tries above the paper's shift at each scale.
EXTRA_SHIFTS = 3
#: Adam steps of :func:`adaround`, its learning rate, regulariser weight and warm-up fraction (no regulariser).
ITERATIONS, LEARNING_RATE, REGULARISATION, WARM_UP = 300, 0.05, 10.0, 0.2
#: The regulariser's exponent, annealed from the first to the second value after the warm-up.
BETA = (20.0, 2.0)
#: AdaRound's rectified sigmoid stretch: ``h = clip(sigmoid(v) (ZETA - GAMMA) + GAMMA, 0, 1)``.
ZETA, GAMMA = 1.1, -0.1
#: Damping of every second-moment matrix, relative to its mean diagonal.
DAMPING = 0.01
#: Output positions sampled per calibration image and layer (all of them where the map has fewer).
POSITIONS = 128


@dataclasses.dataclass(frozen=True, eq=False)
class InputStatistics:
    """The input patches of one weighted layer over the calibration data.

    Members
    -------
    second_moment : numpy.ndarray or None
        float64 ``(groups, K, K)``, ``E[x x^T]`` (``None`` where ``samples`` is kept instead).
    samples : numpy.ndarray or None
        float64 ``(groups, N, K)``, the patches themselves when there are fewer than ``K`` (cheaper than ``K x K``).
    mean : numpy.ndarray
        float64 ``(groups, K)``, ``E[x]``.
    count : int
        Patches ``N``.
    """
    second_moment: np.ndarray
    samples: np.ndarray
    mean: np.ndarray
    count: int

    def product(self, errors, centred, damping=DAMPING):
        """``e_c^T G`` of each row of ``errors`` ``(C, K)`` (output channels grouped in order), ``G`` the second
        moment, or (``centred``) the covariance, plus ``damping`` times its mean diagonal."""
        return self.operator(centred, damping)(errors)

    def operator(self, centred, damping=DAMPING, dtype=np.float64):
        """:meth:`product` as a function of ``errors``, its matrices prepared once (in ``dtype``)."""
        groups, k = self.mean.shape
        if self.samples is not None:
            x = (self.samples - self.mean[:, None] if centred else self.samples) / np.sqrt(self.count)
            diagonal = np.einsum("gnk,gnk->g", x, x) / k
            x = x.astype(dtype)
            left = x.transpose(0, 2, 1)

            def apply(e):
                return np.matmul(np.matmul(e, left), x)
        else:
            moment = self.second_moment - (np.einsum("gk,gl->gkl", self.mean, self.mean) if centred else 0.0)
            diagonal = np.einsum("gkk->g", moment) / k
            moment = moment.astype(dtype)

            def apply(e):
                return np.matmul(e, moment)
        damped = (damping * diagonal).astype(dtype)[:, None, None]

        def product(errors):
            e = errors.reshape(groups, -1, k)
            return (apply(e) + damped * e).reshape(errors.shape)
        return product


def input_statistics(graph, images, *, positions=POSITIONS, seed=0, batch_size=32, progress=True):
    """:class:`InputStatistics` of every Conv and FullyConnected node of ``graph`` (keyed by its output tensor) over
    ``images`` (float NCHW, normalised), from the float graph's tensors in onnxruntime; ``positions`` output positions
    per image and layer, drawn without replacement (seeded), or all of them. Fully connected inputs are in the IR's
    (ONNX) feature order."""
    if len(images) == 0:
        raise ValueError("output-error statistics need at least one calibration image")
    weighted = [node for node in graph.nodes if isinstance(node, (ir.Conv, ir.FullyConnected))]
    wanted = sorted({node.input for node in weighted} - {graph.input})
    runner = session(graph.to_onnx())
    rng = np.random.default_rng(seed)
    sums = {}
    for start in tqdm(range(0, len(images), batch_size), desc="calibration (layer inputs)", unit="batch",
                      disable=not progress, leave=False):
        batch = np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32)
        values = {graph.input: batch, **dict(zip(wanted, runner.run(wanted, {graph.input: batch}) if wanted else []))}
        for node in weighted:
            patches = _patches(node, values[node.input].astype(np.float64), positions, rng)
            total = sums.setdefault(node.output, {"count": 0, "sum": 0.0, "moment": 0.0, "samples": []})
            total["count"] += patches.shape[1]
            total["sum"] = total["sum"] + patches.sum(axis=1)
            if patches.shape[1] and _keep_samples(node, len(images), positions, graph):
                total["samples"].append(patches)
            else:
                total["moment"] = total["moment"] + np.matmul(patches.transpose(0, 2, 1), patches)
    statistics = {}
    for node in weighted:
        total = sums[node.output]
        samples = np.concatenate(total["samples"], axis=1) if total["samples"] else None
        statistics[node.output] = InputStatistics(
            second_moment=None if samples is not None else total["moment"] / total["count"], samples=samples,
            mean=total["sum"] / total["count"], count=total["count"])
    return statistics


def _keep_samples(node, images, positions, graph):
    """Whether the layer's patches are fewer than its patch length (then kept instead of their ``K x K`` moment)."""
    weights = node.weights
    k = int(np.prod(weights.shape[1:]))
    if isinstance(node, ir.FullyConnected):
        return images < k
    _, h, w = graph.shapes[node.output]
    return images * min(positions, h * w) < k


def _patches(node, x, positions, rng):
    """``(groups, N, K)`` input patches of ``node`` at up to ``positions`` sampled output positions per image."""
    if isinstance(node, ir.FullyConnected):
        return x.reshape(1, x.shape[0], -1)
    _, per_group, kh, kw = node.weights.shape
    top, bottom, left, right = node.padding
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::node.stride[0], ::node.stride[1]]
    n, _, ho, wo = windows.shape[:4]
    count = min(positions, ho * wo)
    chosen = np.stack([rng.choice(ho * wo, count, replace=False) for _ in range(n)])
    picked = windows.transpose(0, 2, 3, 1, 4, 5)[np.arange(n)[:, None], chosen // wo, chosen % wo]
    return picked.reshape(n * count, node.groups, per_group * kh * kw).transpose(1, 0, 2)


def output_error(statistics, errors, *, centred=False, damping=DAMPING):
    """``e_c^T G e_c`` of each row of ``errors`` (weight errors ``(C, K)``), ``G`` damped
    (:meth:`InputStatistics.product`)."""
    return np.sum(statistics.product(errors, centred, damping) * errors, axis=1)


def output_error_scales(weights, statistics, *, method, bits=8, shift_bits=4, centred=False):
    """``(scales, layer_scale, shifts)`` of ``layer``, ``channel``, ``wess`` or ``wess-mse`` chosen by output error
    (module docstring, ``+oe``); ``weights`` ``(C, K)`` float64, nearest rounding; ``layer_scale`` is ``None`` for
    ``channel``."""
    qmax = qmax_for_bits(bits)
    ranges = channel_ranges(weights)
    top = float(ranges.max())
    channels = weights.shape[0]
    best = None
    for factor in SCALE_FACTORS:
        if method == "channel":
            # Each channel its own factor: the candidates of every factor compete channel by channel.
            scales = snap_scale(np.where(ranges > 0, ranges, top) * factor / qmax, up=False)
            candidate = _scored(weights, statistics, scales, None, np.zeros(channels, dtype=np.int64), qmax, centred)
            best = candidate if best is None else _per_channel(best, candidate)
            continue
        layer_scale = snap_scale(factor * top / qmax, up=False)
        paper = (np.zeros(channels, dtype=np.int64) if method == "layer"
                 else wess_shifts(np.minimum(ranges, factor * top), shift_bits))
        current = None
        for extra in range(1 if method == "layer" else EXTRA_SHIFTS):
            shifts = np.minimum(paper + extra, (1 << shift_bits) - 1)
            candidate = _scored(weights, statistics, layer_scale * np.exp2(-shifts.astype(np.float64)), layer_scale,
                                shifts, qmax, centred)
            current = candidate if current is None else _per_channel(current, candidate)
        # One layer scale for all channels: the layer's total output error decides (ties keep the larger scale).
        if best is None or current[3].sum() < best[3].sum():
            best = current
    return best[0], best[1], best[2]


def _scored(weights, statistics, scales, layer_scale, shifts, qmax, centred):
    """``[scales, layer_scale, shifts, output error per channel]`` of nearest rounding at ``scales``."""
    values, _ = round_to_grid(weights, scales, qmax=qmax)
    return [scales, layer_scale, shifts, output_error(statistics, values * scales[:, None] - weights,
                                                      centred=centred)]


def _per_channel(best, candidate):
    """Channel by channel the smaller output error of two :func:`_scored` results (ties keep ``best``)."""
    better = candidate[3] < best[3]
    return [np.where(better, candidate[0], best[0]), best[1], np.where(better, candidate[2], best[2]),
            np.where(better, candidate[3], best[3])]


def adaround(weights, scales, statistics, *, bits=8, centred=False, iterations=ITERATIONS,
             regularisation=REGULARISATION, learning_rate=LEARNING_RATE):
    """int64 integers ``(C, K)`` of ``weights`` ``(C, K)`` at the channel ``scales``, each ``floor(W / s)`` or one
    above (clipped to ``[-qmax, qmax]``), chosen to minimise the output error (module docstring, ``+ar``). No channel
    ends with a larger undamped output error on the calibration patches than nearest rounding gives."""
    qmax = qmax_for_bits(bits)
    s = scales[:, None]
    exact = weights / s
    floor = np.floor(exact)
    nearest, _ = round_to_grid(weights, scales, qmax=qmax)
    base = output_error(statistics, nearest * s - weights, centred=centred)
    norm = np.where(base > 0, base, 1.0)[:, None]
    # Optimised in float32 (the result is a choice between two integers, checked in float64 below).
    product = statistics.operator(centred, dtype=np.float32)
    weights32, s32, floor32 = (a.astype(np.float32) for a in (weights, s, floor))
    scaled = (2.0 * s / norm).astype(np.float32)
    v = np.log((exact - floor - GAMMA) / (ZETA - exact + floor)).astype(np.float32)  # h(v) = the fractional part
    first, second = np.zeros_like(v), np.zeros_like(v)
    warm = int(WARM_UP * iterations)
    for step in range(iterations):
        sigmoid = 1.0 / (1.0 + np.exp(-v))
        stretched = sigmoid * (ZETA - GAMMA) + GAMMA
        h = np.clip(stretched, 0.0, 1.0)
        q = floor32 + h
        grad = product(np.clip(q, -qmax, qmax) * s32 - weights32) * scaled * (np.abs(q) <= qmax)
        if step >= warm:
            beta = BETA[0] + (BETA[1] - BETA[0]) * (step - warm) / max(iterations - warm - 1, 1)
            a = 2.0 * h - 1.0
            grad -= regularisation * 2.0 * beta * np.abs(a) ** (beta - 1.0) * np.sign(a) / weights.shape[1]
        grad *= (ZETA - GAMMA) * sigmoid * (1.0 - sigmoid) * ((stretched > 0.0) & (stretched < 1.0))
        first = 0.9 * first + 0.1 * grad
        second = 0.999 * second + 0.001 * grad * grad
        v -= learning_rate * (first / (1 - 0.9 ** (step + 1))) / (np.sqrt(second / (1 - 0.999 ** (step + 1))) + 1e-12)
    values = np.clip(floor + (v >= 0.0), -qmax, qmax).astype(np.int64)
    rounded = output_error(statistics, values * s - weights, centred=centred, damping=0.0)
    worse = rounded > output_error(statistics, nearest * s - weights, centred=centred, damping=0.0)
    return np.where(worse[:, None], nearest, values)


def refine_weights(weights, statistics, *, method="wess", bits=8, shift_bits=4, quantizer="uniform",
                   search=False, rounding=False, centred=False):
    """:func:`tools.quantizer.weights.quantize_weights` with the scales chosen by output error (``search``, ``+oe``)
    and/or the rounding optimised against it (``rounding``, ``+ar``); ``statistics`` the layer's
    :class:`InputStatistics` (``weights`` flattened per output channel in their order), ``centred`` with bias
    correction. Same :class:`tools.quantizer.weights.WeightQuantization` as nearest rounding gives (uniform grid).

    Raises:
        ValueError: a two-bit quantizer, or what :func:`quantize_weights` refuses.
    """
    if quantizer != "uniform":
        raise ValueError(f"+oe and +ar choose integers on the uniform grid, not with the {quantizer} quantizer")
    nearest = quantize_weights(weights, method=method, bits=bits, shift_bits=shift_bits)
    flat = np.asarray(weights, dtype=np.float64).reshape(nearest.values.shape[0], -1)
    scales, layer_scale, shifts = (nearest.scales, nearest.layer_scale, nearest.shifts) if not search else \
        output_error_scales(flat, statistics, method=method, bits=bits, shift_bits=shift_bits, centred=centred)
    qmax = qmax_for_bits(bits)
    values, clipped = round_to_grid(flat, scales, qmax=qmax)
    if rounding:
        values = adaround(flat, scales, statistics, bits=bits, centred=centred)
    return dataclasses.replace(nearest, values=values.reshape(nearest.values.shape), scales=scales,
                               layer_scale=layer_scale, shifts=shifts, clipped=clipped)
