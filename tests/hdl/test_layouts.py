"""hdl/layouts.py: the RTL's bias word is golden/layouts.py's, field for field."""

import numpy as np
from amaranth.lib import data

from golden.config import NPUConfig
from golden.layouts import bias_word_width, pack_bias_words, unpack_bias_words
from hdl.layouts import bias_word


def test_bias_word_is_one_definition_for_golden_and_hdl():
    config = NPUConfig(lanes=4)
    rng = np.random.default_rng(0)
    bias = rng.integers(-(1 << 31), 1 << 31, size=(5, 4))
    channel_shift = rng.integers(0, 16, size=(5, 4))
    words = pack_bias_words(bias, channel_shift, config)
    assert max(words).bit_length() <= bias_word_width(config) == data.Layout.cast(bias_word(config)).size
    got_bias, got_shift = unpack_bias_words(words, config)
    np.testing.assert_array_equal(got_bias, bias)
    np.testing.assert_array_equal(got_shift, channel_shift)
    view = data.Const(bias_word(config), words[2])
    assert [view.bias[c] for c in range(4)] == bias[2].tolist()
    assert [view.channel_shift[c] for c in range(4)] == channel_shift[2].tolist()
