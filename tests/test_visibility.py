"""The book's measure of a perturbation's visibility, against hand-computed grey levels."""
import numpy as np
import pytest
import torch

from lib import visibility


def test_grey_levels_and_words_by_hand():
    x = torch.full((3, 1, 2, 2), 0.5)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] += 1 / 255  # one pixel, one level: RMS 0.5 level, invisible
    x_adv[1, 0, 0, 0] += 3 / 255  # one pixel, three levels: RMS 1.5 levels, visible
    x_adv[2, 0, 0, 0] += 1.9 / 255  # largest 1.9 levels, RMS 0.95: invisible by the RMS rule
    v = visibility.visibility(x, x_adv)
    np.testing.assert_allclose(v.largest, [1, 3, 1.9], rtol=1e-5)
    np.testing.assert_allclose(v.rms, [0.5, 1.5, 0.95], rtol=1e-5)
    assert v.words == ("invisible", "visible", "invisible")
    assert [v.count(w) for w in visibility.WORDS] == [2, 1]
    assert "of 3 images: 2 invisible, 1 visible" in v.sentence()


def test_unchanged_image_is_invisible():
    x = torch.rand(2, 3, 4, 4)
    assert visibility.visibility(x, x.clone()).words == ("invisible", "invisible")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same shape"):
        visibility.visibility(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="finite"):
        visibility.visibility(torch.zeros(1, 4), torch.full((1, 4), float("nan")))
    with pytest.raises(ValueError, match="rms <= largest"):
        visibility.word(1.0, 2.0)
    with pytest.raises(ValueError, match="word must be one of"):
        visibility.visibility(torch.zeros(1, 4), torch.zeros(1, 4)).count("hidden")
