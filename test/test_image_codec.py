"""The Image converter on every encoding, byte order, row padding, and every malformed frame."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from irstd_ros.eval.datasets import read_image
from irstd_ros.errors import ImageFormatError
from irstd_ros.ros.image_codec import decode, encode, to_array

RNG = np.random.default_rng(0)
G8 = RNG.integers(0, 256, (7, 9), dtype=np.uint8)


def fields(arr, encoding, bigendian=False, pad=0):
    """What a publisher would put in an Image message for ``arr``."""
    a = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    h = a.shape[0]
    row = a[0].nbytes
    step = row + pad
    buf = bytearray(step * h)
    for y in range(h):
        buf[y * step:y * step + row] = a[y].tobytes()
    return dict(encoding=encoding, height=h, width=a.shape[1], step=step, is_bigendian=bigendian, data=bytes(buf))


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("enc", ["mono8", "8UC1"])
def test_mono8(enc, pad):
    np.testing.assert_array_equal(decode(**fields(G8, enc, pad=pad)), G8 / np.float32(255))


@pytest.mark.parametrize("enc, order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]), ("rgba8", [0, 1, 2, 3]),
                                        ("bgra8", [2, 1, 0, 3])])
def test_colour_matches_pil_luma(enc, order, tmp_path):
    rgb = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    want = read_image(tmp_path / "c.png")  # the training reader's conversion
    arr = np.concatenate([rgb, np.full((7, 9, 1), 77, np.uint8)], axis=2)[..., order]
    got = decode(**fields(arr, enc, pad=5))
    np.testing.assert_array_equal(got, want)


def test_grey_stored_as_rgb_is_exact():
    rgb = np.repeat(G8[..., None], 3, axis=2)
    np.testing.assert_array_equal(decode(**fields(rgb, "rgb8")), G8 / np.float32(255))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 2])
def test_mono16_byte_order_and_padding(bigendian, pad):
    a = RNG.integers(0, 65536, (5, 6)).astype(np.uint16)
    arr = to_array(**fields(a, "mono16", bigendian, pad))
    np.testing.assert_array_equal(arr, a)
    np.testing.assert_allclose(decode(**fields(a, "16UC1", bigendian, pad), normalization="full_range"),
                               a / 65535.0, rtol=1e-6)


def test_mono16_stretch_uses_the_frame_range():
    raw = np.full((64, 64), 7400, np.uint16) + RNG.integers(0, 60, (64, 64)).astype(np.uint16)
    raw[30:32, 30:32] = 7900  # a warm target
    g = decode(**fields(raw, "mono16"))
    assert g.min() == 0.0 and g[30, 30] == 1.0
    assert 0.05 < float(np.median(g)) < 0.95  # the background is not crushed to black


def test_32fc1_direct_and_stretched():
    a = RNG.random((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(decode(**fields(a, "32FC1")), a)
    kelvin = 280 + 10 * a
    g = decode(**fields(kelvin, "32FC1", bigendian=True))
    assert g.min() == 0.0 and g.max() == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_32fc1_nan_inf_rejected(bad):
    a = np.zeros((4, 4), np.float32)
    a[2, 2] = bad
    with pytest.raises(ImageFormatError, match="NaN or Inf"):
        decode(**fields(a, "32FC1"))


def test_malformed_frames():
    f = fields(G8, "mono8")
    with pytest.raises(ImageFormatError, match="unsupported encoding 'yuv422'"):
        decode(**{**f, "encoding": "yuv422"})
    with pytest.raises(ImageFormatError, match="truncated data"):
        decode(**{**f, "data": f["data"][:-1]})
    with pytest.raises(ImageFormatError, match="step 8 is smaller"):
        decode(**{**f, "step": 8})
    with pytest.raises(ImageFormatError, match="empty image"):
        decode(**{**f, "height": 0, "data": b""})
    with pytest.raises(ImageFormatError, match="exceeds max_image_pixels"):
        decode(**f, max_pixels=50)


def test_last_row_may_omit_its_padding():
    f = fields(G8, "mono8", pad=4)
    np.testing.assert_array_equal(decode(**{**f, "data": f["data"][:-4]}), G8 / np.float32(255))


@pytest.mark.parametrize("enc, arr", [("mono8", G8), ("32FC1", RNG.random((3, 4)).astype(np.float32)),
                                      ("rgb8", RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)),
                                      ("mono16", RNG.integers(0, 65536, (3, 4)).astype(np.uint16))])
def test_encode_round_trip(enc, arr):
    data, step = encode(arr, enc)
    back = to_array(enc, arr.shape[0], arr.shape[1], step, False, data)
    np.testing.assert_array_equal(back, arr)
