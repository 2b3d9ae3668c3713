"""The one description of an NPU hardware instance.

A frozen dataclass shared by the RTL constructors (``hdl/``), the golden model (``golden/``), the memory-image writer
and the testbenches. Across a process boundary (a cocotb simulation, a quantizer output directory) it travels as JSON
through :meth:`NPUConfig.to_json` / :meth:`NPUConfig.from_json`.
"""

import dataclasses
import json

__all__ = ["NPUConfig", "check_config"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class NPUConfig:
    """Parameters of one NPU instance.

    Parameters
    ----------
    lanes : int
        Requantizer lanes: accumulators accepted (and int8 results produced) per clock cycle. A power of two. It is
        also the engine's word width in channels (one activation word holds ``lanes`` int8 channels of one pixel) and
        its MAC array side: ``lanes`` output channels x ``lanes`` input channels (``lanes**2`` MACs, 64 by default);
        the engine needs at least 2.
    acc_bits : int
        Accumulator width; the requantizer input. The arithmetic is defined for 32 (docs/arithmetic.md).
    shift_bits : int
        Width of the per-output-channel WESS shift k_c (0 <= k_c < 2**shift_bits).
    multiplier_bits : int
        Width of the unsigned per-layer fixed-point multiplier mantissa (Q0.31 for 31).
    layer_shift_bits : int
        Width of the signed per-layer shift exponent (TFLite convention: positive = left shift).
    act_depth : int
        Words per activation memory bank; the activation memory has ``lanes`` banks of ``lanes``-byte words.
    weight_depth : int
        Words of the weight memory; a word holds ``lanes**2`` int8 weights.
    bias_depth : int
        Words of the bias memory; a word holds ``lanes`` int32 biases and their ``lanes`` channel shifts k_c.
    dim_bits : int
        Width of the layer descriptor's size fields (height, width, kernel): sizes up to ``2**dim_bits - 1``.
    channel_bits : int
        Width of the layer descriptor's channel-count fields: up to ``2**channel_bits - 1`` channels.
    weight_code_bits : int
        8: every layer's weights are int8 words. 2: the engine also has the two-bit decoder: a layer whose
        descriptor says ``weight_format`` 1 stores its weights as two-bit codes, four code words to a weight word,
        decoded to int8 in front of the MAC array with the descriptor's 4-entry codebook (docs/memory.md section 2a).
    program_depth : int
        Words of the descriptor memory: the most engine layers one program holds (``hdl/controller.py``; MobileNetV2
        runs about 65 with its residual adds).
    table_depth : int
        256-entry int8 activation tables the table memory holds (docs/memory.md section 3a): a layer with the
        descriptor's ``table`` flag looks each requantized output up in table ``table_base``.

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
    act_depth: int = 2048
    weight_depth: int = 1024
    bias_depth: int = 256
    dim_bits: int = 10
    channel_bits: int = 12
    weight_code_bits: int = 8
    program_depth: int = 128
    table_depth: int = 16

    def __post_init__(self):
        for name, low, high in (("lanes", 1, 256), ("acc_bits", 32, 32), ("shift_bits", 1, 5),
                                ("multiplier_bits", 31, 31), ("layer_shift_bits", 6, 6),
                                ("act_depth", 2, 1 << 20), ("weight_depth", 2, 1 << 20), ("bias_depth", 2, 1 << 20),
                                ("dim_bits", 4, 16), ("channel_bits", 4, 16),
                                ("program_depth", 1, 1 << 16), ("table_depth", 1, 1 << 12)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                bounds = f"{low}" if low == high else f"in [{low}, {high}]"
                raise ValueError(f"{name} must be an integer {bounds}, not {value!r}")
        if self.weight_code_bits not in (8, 2) or isinstance(self.weight_code_bits, bool):
            raise ValueError(f"weight_code_bits must be 8 or 2, not {self.weight_code_bits!r}")
        if self.lanes & (self.lanes - 1):
            raise ValueError(f"lanes must be a power of two, not {self.lanes!r}")

    @property
    def lane_bits(self):
        """``log2(lanes)``: lane and bank indices are this many bits."""
        return self.lanes.bit_length() - 1

    @property
    def macs(self):
        """MACs in the engine's array (``lanes**2``)."""
        return self.lanes * self.lanes

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


def check_config(config):
    """``config`` itself if it is an :class:`NPUConfig` (the one type check of the hardware constructors).

    Raises
    ------
    TypeError
        If ``config`` is not an :class:`NPUConfig`.

    Examples
    --------
    >>> check_config(NPUConfig(lanes=4)).lanes
    4
    """
    if not isinstance(config, NPUConfig):
        raise TypeError(f"config must be an NPUConfig, not {config!r}")
    return config
