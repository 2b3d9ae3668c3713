"""``$readmemh`` files: the engine's memory images as text, one word per line (docs/memory.md section 5)."""

from pathlib import Path

__all__ = ["write_hex", "read_hex"]


def write_hex(path, words, width):
    """Write words as a ``$readmemh`` file: one word per line, ``ceil(width/4)`` lowercase hex digits, word 0 first."""
    digits = -(-width // 4)
    Path(path).write_text("".join(f"{word:0{digits}x}\n" for word in words))


def read_hex(path):
    """Words of a ``$readmemh`` file written by :func:`write_hex`."""
    return [int(line, 16) for line in Path(path).read_text().split()]
