"""sg3-dataset's crops against spec section 7: which pixels are kept, LANCZOS resizing, the wide canvas."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sg3.data.transforms import transform_image


def _ramp(w: int, h: int) -> Image.Image:
    """An RGB image whose pixel (y, x) is (y, x, 7): every crop offset shows."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.arange(h)[:, None]
    arr[..., 1] = np.arange(w)[None, :]
    arr[..., 2] = 7
    return Image.fromarray(arr)


def test_center_crop_keeps_the_central_square_then_resizes_with_lanczos():
    # Central square of side min(h, w): rows/cols [(n - side) // 2, (n + side) // 2).
    for w, h in ((13, 8), (8, 13), (10, 7)):
        side = min(w, h)
        out = np.asarray(transform_image(_ramp(w, h), "center-crop", None))
        top, left = (h - side) // 2, (w - side) // 2
        assert out.shape == (side, side, 3)
        assert out[0, 0, 0] == top and out[0, 0, 1] == left and out[-1, -1, 0] == top + side - 1
    img = _ramp(24, 16)
    want = np.asarray(img.crop((4, 0, 20, 16)).resize((8, 8), Image.LANCZOS))
    np.testing.assert_array_equal(np.asarray(transform_image(img, "center-crop", (8, 8))), want)
    np.testing.assert_array_equal(
        np.asarray(transform_image(_ramp(16, 16), "none", (8, 8))),
        np.asarray(_ramp(16, 16).resize((8, 8), Image.LANCZOS)),
    )


def test_center_crop_wide_on_an_image_exactly_w_wide():
    # Rows cropped to round(W * h / w) around the centre, resized to W x H, pasted at row (W - H) // 2 of
    # a black W x W canvas (for images exactly W wide the official band and ours agree).
    img = _ramp(16, 14)
    out = np.asarray(transform_image(img, "center-crop-wide", (16, 8)))
    band = np.asarray(img)[3:11]  # round(16 * 8 / 16) = 8 rows starting at (14 - 8) // 2 = 3
    assert out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out[4:12], band)
    assert not out[:4].any() and not out[12:].any()


def test_32_bit_gray_out_of_16_bit_range_saturates_instead_of_wrapping():
    from sg3.data.transforms import convert_channels

    def gray(v: int) -> int:
        return int(
            np.asarray(convert_channels(Image.fromarray(np.full((4, 4), v, np.int32), mode="I"), "gray"))[
                0, 0
            ]
        )

    assert (gray(100000), gray(-5), gray(65535), gray(40000), gray(200)) == (255, 0, 255, 156, 200)
