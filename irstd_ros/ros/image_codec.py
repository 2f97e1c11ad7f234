"""``sensor_msgs/Image`` fields <-> numpy, without cv_bridge (there is none on PyPI for ROS 2).

Decoding turns any supported encoding into the grey float32 [0, 1] frame the
models take, and rejects malformed frames with :class:`ImageFormatError`:

=================  =========================================================
encoding           to grey [0, 1]
=================  =========================================================
mono8, 8UC1        value / 255
rgb8, bgr8,        ITU-R 601 luma, PIL's integer formula, then / 255 (so a
rgba8, bgra8       grey frame stored as RGB gives exactly its grey value)
mono16, 16UC1      ``normalization="stretch"`` (default): per-frame robust
                   stretch, ``(v - p1) / (p99.99 - p1)`` clipped to [0, 1];
                   raw thermal counts use a few hundred of 65536 levels, so a
                   fixed scale would give a near-black frame.
                   ``"full_range"``: value / 65535
32FC1              used as is when every value lies in [0, 1], else the same
                   robust stretch; NaN or Inf rejects the frame
=================  =========================================================

``is_bigendian`` and row padding (``step > width * bytes_per_pixel``) are honoured.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..errors import ImageFormatError

# encoding -> (channels, numpy dtype (little endian))
ENCODINGS = {
    "mono8": (1, np.uint8), "8UC1": (1, np.uint8),
    "mono16": (1, np.uint16), "16UC1": (1, np.uint16),
    "rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
    "32FC1": (1, np.float32),
}
NORMALIZATIONS = ("stretch", "full_range")
STRETCH_PERCENTILES = (1.0, 99.99)
DEFAULT_MAX_PIXELS = 4096 * 4096


def to_array(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data,
             max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """View the message buffer as ``(H, W)`` or ``(H, W, C)`` in native byte order, validating every field."""
    if encoding not in ENCODINGS:
        raise ImageFormatError(f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"empty image ({width}x{height})")
    if height * width > max_pixels:
        raise ImageFormatError(f"image {width}x{height} exceeds max_image_pixels={max_pixels}")
    channels, dtype = ENCODINGS[encoding]
    itemsize = np.dtype(dtype).itemsize
    row = width * channels * itemsize
    if step < row:
        raise ImageFormatError(f"step {step} is smaller than width x bytes per pixel = {row} for {encoding}")
    buf = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    need = step * (height - 1) + row
    if len(buf) < need:
        raise ImageFormatError(f"truncated data: {len(buf)} bytes for {width}x{height} {encoding} with step {step} "
                               f"(need {need})")
    raw = np.frombuffer(buf, np.uint8, count=need)
    if step == row:
        rows = raw[: row * height].reshape(height, row)
    else:  # padded rows: take a strided view, then drop the padding
        rows = np.lib.stride_tricks.as_strided(np.frombuffer(buf, np.uint8, count=need), (height, row), (step, 1))
    dt = np.dtype(dtype).newbyteorder(">" if is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).astype(dtype, copy=False)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return arr.reshape(shape)


def robust_stretch(arr: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(arr, STRETCH_PERCENTILES)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((arr.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)


def to_grey(arr: np.ndarray, encoding: str, normalization: str = "stretch") -> np.ndarray:
    """Convert a decoded array to the models' grey float32 [0, 1] frame (see the module table)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown 16-bit normalization {normalization!r}")
    if encoding in ("mono8", "8UC1"):
        return arr.astype(np.float32) / np.float32(255)
    if encoding in ("rgb8", "rgba8", "bgr8", "bgra8"):
        r, g, b = (arr[..., 0], arr[..., 1], arr[..., 2]) if encoding.startswith("rgb") else \
            (arr[..., 2], arr[..., 1], arr[..., 0])
        luma = (r.astype(np.uint32) * 19595 + g.astype(np.uint32) * 38470 + b.astype(np.uint32) * 7471
                + 0x8000) >> 16
        return luma.astype(np.float32) / np.float32(255)
    if encoding in ("mono16", "16UC1"):
        if normalization == "full_range":
            return arr.astype(np.float32) / np.float32(65535)
        return robust_stretch(arr)
    if encoding == "32FC1":
        if not np.isfinite(arr).all():
            raise ImageFormatError("32FC1 image contains NaN or Inf")
        if arr.min() >= 0.0 and arr.max() <= 1.0:
            return arr.astype(np.float32, copy=False)
        return robust_stretch(arr)
    raise ImageFormatError(f"unsupported encoding {encoding!r}")


def decode(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data,
           normalization: str = "stretch", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Message fields -> grey float32 (H, W) in [0, 1]; raises ImageFormatError on a malformed frame."""
    return to_grey(to_array(encoding, height, width, step, is_bigendian, data, max_pixels), encoding, normalization)


def encode(arr: np.ndarray, encoding: str) -> Tuple[bytes, int]:
    """numpy -> (data, step) for mono8 / mono16 / rgb8 / bgr8 / 32FC1 little-endian messages."""
    channels, dtype = ENCODINGS[encoding]
    arr = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    expect = 2 if channels == 1 else 3
    if arr.ndim != expect or (channels > 1 and arr.shape[2] != channels):
        raise ValueError(f"array of shape {arr.shape} does not fit encoding {encoding}")
    return arr.tobytes(), arr.shape[1] * channels * arr.itemsize
