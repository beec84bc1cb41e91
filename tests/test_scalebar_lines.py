"""Bar-like lines found without the detector (micrometry.calibrate.scalebar.lines)."""

from __future__ import annotations

import numpy as np
import pytest

from micrometry.calibrate.scalebar.lines import find_bar_lines


def _noisy(shape, level, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(level, sigma, shape), 0, 255).astype(np.uint8)


def test_bright_bar_is_found_with_its_box():
    img = np.full((300, 400), 90, np.uint8)
    img[250:256, 40:160] = 255  # 120 x 6 px
    lines = find_bar_lines(img)
    assert len(lines) == 1
    x0, y0, x1, y1 = lines[0].box  # across exact; along within the 5-px smoothing
    assert (y0, y1) == (250, 256) and abs(x0 - 40) <= 2 and abs(x1 - 160) <= 2
    assert (lines[0].orientation, lines[0].polarity) == ("h", "bright")


def test_black_vertical_bar_on_dark_noise():
    """A black 5 x 94 px vertical bar on a background of grey 47 +- 25 (synthetic seed
    10,000,067, where the detector found nothing): found, with a label-sized blob of text
    beside it left out (no run of 15 px)."""
    img = _noisy((480, 380), 47, 25)
    img[10:104, 59:64] = 0
    img[12:24, 12:22] = 0  # glyph-sized marks beside it
    img[12:24, 30:40] = 0
    lines = find_bar_lines(img)
    assert lines, "nothing found"
    x0, y0, x1, y1 = lines[0].box
    assert (x0, x1) == (59, 64) and abs(y0 - 10) <= 2 and abs(y1 - 104) <= 2
    assert lines[0].orientation == "v" and lines[0].polarity == "dark"


def test_double_line_is_one_band():
    """Two white 2-px lines 1 px apart (a double bar) are one 5-px band; either line alone
    has the other line beside it."""
    img = np.full((300, 300), 60, np.uint8)
    img[131:206, 246:248] = 255
    img[131:206, 249:251] = 255
    lines = find_bar_lines(img)
    assert len(lines) == 1
    x0, y0, x1, y1 = lines[0].box
    assert (x0, x1) == (246, 251) and abs(y0 - 131) <= 2 and abs(y1 - 206) <= 2


@pytest.mark.parametrize("what", ["edge", "border", "long", "disc"])
def test_what_is_not_a_bar_line(what):
    """The edge of a bright region (contrast on one side only), a line touching the image's
    border, one spanning most of the image (a frame or a data bar's edge), and a disc."""
    img = np.full((300, 400), 90, np.uint8)
    if what == "edge":
        img[200:, :] = 255
        img[200:, 0] = 90  # not touching the border as a component: still one-sided
        img[-1, :] = 90
    elif what == "border":
        img[250:256, 0:120] = 255
    elif what == "long":
        img[250:256, 10:390] = 255
    else:
        yy, xx = np.mgrid[:300, :400]
        img[(yy - 150) ** 2 + (xx - 200) ** 2 <= 40 ** 2] = 255
    assert find_bar_lines(img) == []


def test_lines_near_the_border_rank_first():
    """Of two equal bars, the one along the border ranks first, even against a line a
    little longer and clearer in the middle of the image."""
    img = np.full((400, 400), 90, np.uint8)
    img[200:204, 150:260] = 255  # in the middle, 110 px
    img[380:384, 20:120] = 255  # along the bottom, 100 px
    rows = [line.box[1] for line in find_bar_lines(img)]
    assert rows == [380, 200]


def test_constant_and_bad_images():
    assert find_bar_lines(np.zeros((50, 50), np.uint8)) == []
    with pytest.raises(ValueError, match="2-D"):
        find_bar_lines(np.zeros((5, 5, 3)))
