"""Golden model of the channel concatenation of int8 tensors (TFLite CONCATENATION, int8 reference kernel).

LiteRT's int8 CONCATENATION does not requantize: its Prepare requires every input to have the output's scale and zero
point, and the kernel copies the values. So the quantizer gives a concatenation's inputs and output one quantization
(the union of their calibrated ranges) and the operation is a copy: on the engine the producers write into adjacent
channel ranges of one tensor (docs/arithmetic.md, "Concatenation").
"""

import numpy as np

from .conv import _int_array

__all__ = ["concatenate"]


def concatenate(tensors):
    """int8 NHWC tensors joined along the channel (last) axis.

    Args:
        tensors: two or more int8 arrays ``(N, H, W, C_i)`` with the same ``N, H, W``.
    Returns:
        int64 array ``(N, H, W, sum C_i)``.
    Raises:
        ValueError: for fewer than two tensors, a value outside int8 or shapes that differ outside the channel axis.

    Examples:
        >>> concatenate([np.zeros((1, 1, 1, 2), np.int8), np.ones((1, 1, 1, 1), np.int8)]).tolist()
        [[[[0, 0, 1]]]]
    """
    tensors = [_int_array(t, f"input {i}", -128, 127).astype(np.int64) for i, t in enumerate(tensors)]
    if len(tensors) < 2:
        raise ValueError(f"a concatenation joins two or more tensors, not {len(tensors)}")
    if any(t.ndim != 4 or t.shape[:3] != tensors[0].shape[:3] for t in tensors):
        raise ValueError(f"inputs must be (N, H, W, C) with one N, H, W, not {[t.shape for t in tensors]}")
    return np.concatenate(tensors, axis=3)
