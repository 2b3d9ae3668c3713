"""Fixtures of the golden model's tests."""

import pytest


@pytest.fixture
def codes_of_word():
    """``codes_of_word(word, lanes)``: the two-bit codes of a packed code word, lane 0 first, read off its binary
    string (independent of ``golden.layouts``): lane 0 is the LAST two characters."""
    def unpack(word, lanes):
        bits = format(word, f"0{2 * lanes * lanes}b")
        return [int(bits[len(bits) - 2 * i - 2:len(bits) - 2 * i], 2) for i in range(lanes * lanes)]
    return unpack
