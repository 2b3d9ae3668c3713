"""Golden inference on a user's int8 tensor: read it in the network's input layout, run the integer model in batches.

:func:`load_input` reads an int8 ``.npy`` already quantized with the network's input scale and zero point, NHWC (the
golden model's layout) or NCHW (ONNX's), with or without the batch axis; :func:`infer` runs
:func:`golden.network.run` on it batch by batch, optionally keeping every tensor. ``tools/golden_infer.py`` is the
command line.
"""

import numpy as np
from tqdm import tqdm

from golden import network as gnet

__all__ = ["load_input", "infer"]


def load_input(path, network, *, layout="nhwc"):
    """Read an int8 input tensor from ``path`` and return it as an ``np.int8`` NHWC batch for ``network``.

    Raises:
        ValueError: for an unreadable file, a non-integer dtype, values outside int8, or a shape that does not match
            the network's input in the given layout.
    """
    if layout not in ("nhwc", "nchw"):
        raise ValueError(f"layout must be 'nhwc' or 'nchw', not {layout!r}")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path!r} as a .npy array: {error}") from None
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"input {path!r} must be an int8 tensor (already quantized), not {x.dtype}")
    if x.size and (x.min() < -128 or x.max() > 127):
        raise ValueError(f"input {path!r} values must lie in [-128, 127], found [{x.min()}, {x.max()}]")
    expected = tuple(network.tensors[gnet.INPUT].shape)
    if x.ndim == len(expected):
        x = x[None]
    if layout == "nchw" and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    if x.ndim != len(expected) + 1 or x.shape[1:] != expected or not x.shape[0]:
        wanted = expected if layout == "nhwc" or len(expected) != 3 else (expected[2], *expected[:2])
        raise ValueError(f"input {path!r} has shape {x.shape}, the network takes (N, {', '.join(map(str, wanted))}) "
                         f"in {layout.upper()}")
    return np.ascontiguousarray(x, dtype=np.int8)


def infer(network, x, *, batch_size=64, keep=False, progress=False):
    """Golden inference in batches of ``batch_size``: the int8 output, and with ``keep`` also every tensor by name."""
    outputs, kept = [], {}
    for start in tqdm(range(0, len(x), batch_size), desc="golden", unit="batch", disable=not progress, leave=False):
        result = gnet.run(network, x[start:start + batch_size], keep=keep)
        if keep:
            result, trace = result
            for name, value in trace.tensors.items():
                kept.setdefault(name, []).append(np.asarray(value, dtype=np.int8))
        outputs.append(result)
    output = np.concatenate(outputs)
    return (output, {name: np.concatenate(parts) for name, parts in kept.items()}) if keep else output
