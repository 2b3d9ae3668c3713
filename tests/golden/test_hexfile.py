"""golden/hexfile.py: packed memory words written as hex lines and read back."""

import numpy as np

from golden.hexfile import read_hex, write_hex
from golden.layouts import pack_words, unpack_words


def test_pack_and_hex_round_trip(tmp_path):
    values = np.array([[-128, 127, 0, -1], [5, -6, 7, -8]])
    words = pack_words(values, 8)
    assert words[0] == 0xFF_00_7F_80
    np.testing.assert_array_equal(unpack_words(words, 8, 4), values)
    write_hex(tmp_path / "a.hex", words, 32)
    assert (tmp_path / "a.hex").read_text().splitlines() == ["ff007f80", "f807fa05"]
    assert read_hex(tmp_path / "a.hex") == words
