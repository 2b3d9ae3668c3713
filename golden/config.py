"""The one description of an NPU hardware instance.

A frozen dataclass shared by the RTL constructors (``hdl/``), the golden model (``golden/``), the memory-image writer
and the testbenches. Across a process boundary (a cocotb simulation, a quantizer output directory) it travels as JSON
through :meth:`NPUConfig.to_json` / :meth:`NPUConfig.from_json`.
"""

import dataclasses
import json

__all__ = ["NPUConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class NPUConfig:
    """Parameters of one NPU instance.

    Parameters
    ----------
    lanes : int
        Requantizer lanes: accumulators accepted (and int8 results produced) per clock cycle.
    acc_bits : int
        Accumulator width; the requantizer input. The arithmetic is defined for 32 (docs/arithmetic.md).
    shift_bits : int
        Width of the per-output-channel WESS shift k_c (0 <= k_c < 2**shift_bits).
    multiplier_bits : int
        Width of the unsigned per-layer fixed-point multiplier mantissa (Q0.31 for 31).
    layer_shift_bits : int
        Width of the signed per-layer shift exponent (TFLite convention: positive = left shift).

    Raises
    ------
    ValueError
        If a parameter is out of the range the arithmetic supports.
    """

    lanes: int = 8
    acc_bits: int = 32
    shift_bits: int = 4
    multiplier_bits: int = 31
    layer_shift_bits: int = 6

    def __post_init__(self):
        for name, low, high in (("lanes", 1, 256), ("acc_bits", 32, 32), ("shift_bits", 1, 5),
                                ("multiplier_bits", 31, 31), ("layer_shift_bits", 6, 6)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                bounds = f"{low}" if low == high else f"in [{low}, {high}]"
                raise ValueError(f"{name} must be an integer {bounds}, not {value!r}")

    @property
    def max_channel_shift(self):
        """Largest WESS shift k_c a channel can carry."""
        return (1 << self.shift_bits) - 1

    def to_json(self):
        """Serialise for a process boundary (simulator, output directory)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))
