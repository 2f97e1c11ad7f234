"""Reader for the IRSTD benchmark layout ``images/ masks/ splits/`` and its two evaluation protocols.

* ``paper``: resize image (bilinear) and mask (pixel-centre nearest) to the size the papers used
  (256x256 for SIRST-v1 and NUDT-SIRST, 512x512 for IRSTD-1k).
* ``native``: keep the native size; the inference pipeline pads to the network
  stride and crops the prediction back. This is what the ROS node sees.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError

PROTOCOLS = ("paper", "native")
PAPER_SIZES = {"sirst-v1": 256, "nuaa-sirst": 256, "nudt-sirst": 256, "irstd-1k": 512}
DEFAULT_PAPER_SIZE = 256


def read_image(path: str | Path) -> np.ndarray:
    """Read any PNG mode (L, LA, RGB, RGBA, P, I;16, I, F) as a float32 grey image in [0, 1].

    Colour is reduced with the ITU-R 601 luma weights; alpha is dropped; 16-bit
    data is scaled by 1/65535 (raw radiometric counts are stretched by the node,
    not here).
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.float32)
                if mode == "I" and arr.max(initial=0) > 65535:
                    arr = arr / float(arr.max())
                else:
                    arr = arr / 65535.0
                return np.clip(arr, 0.0, 1.0)
            if mode == "F":
                arr = np.asarray(im, dtype=np.float32)
                if not np.isfinite(arr).all():
                    raise DatasetError(f"{path}: float image holds NaN or Inf")
                lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
                return (arr - lo) / max(hi - lo, 1e-12)
            if mode in ("1", "L"):
                return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            if mode in ("LA", "RGB", "RGBA", "CMYK", "YCbCr"):
                return np.asarray(im.convert("RGB").convert("L"), dtype=np.float32) / 255.0
            raise DatasetError(f"{path}: unsupported PNG mode {mode!r}")
    except FileNotFoundError:
        raise DatasetError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Read a target mask as bool; anything above half range is target (``> 127`` for 8-bit)."""
    grey = read_image(path)
    return grey > (127.5 / 255.0)


def paper_size(root: str | Path) -> int:
    """The square size the papers resized this dataset to, from its directory name."""
    return PAPER_SIZES.get(Path(root).resolve().name.lower(), DEFAULT_PAPER_SIZE)


def resize_pair(image: np.ndarray, mask: Optional[np.ndarray], size: int):
    """Paper protocol: bilinear image, nearest-neighbour mask, both to ``size x size``.

    The mask uses pixel-centre-aligned nearest (``INTER_NEAREST_EXACT``, what PIL's
    NEAREST does in the papers' code). OpenCV's plain ``INTER_NEAREST`` samples at
    ``floor(x * scale)`` and shifts the mask by up to a pixel against the bilinear
    image, which for targets a few pixels wide costs IoU in training and scoring.
    """
    img = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    if mask is None:
        return img, None
    m = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
    return img, m


def fit_mask(mask: np.ndarray, shape, name: str) -> np.ndarray:
    """A mask stored at another resolution than its image (SIRST-v1's Misc_111: a 592x400 mask for a
    325x220 image) is area-resized to the image and binarised at 0.5, if the aspect ratios agree
    within 2 %; anything else is an error."""
    (h, w), (mh, mw) = shape, mask.shape
    if abs((w / h) / (mw / mh) - 1) > 0.02:
        raise DatasetError(f"{name}: image is {w}x{h} but mask is {mw}x{mh} (different aspect ratio)")
    return cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5


@dataclass
class Sample:
    name: str
    image: np.ndarray  # float32 (H, W) in [0, 1]
    mask: np.ndarray   # bool (H, W)


class IRSTDDataset:
    """One split of a dataset in the ``images/ masks/ splits/`` layout.

    Every name in the split is checked up front, so a missing file fails at
    construction with its name, not half-way through an evaluation.
    """

    def __init__(self, root: str | Path, split: str = "test", protocol: str = "native",
                 size: Optional[int] = None):
        self.root = Path(root)
        if protocol not in PROTOCOLS:
            raise DatasetError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory not found: {self.root}")
        for sub in ("images", "masks", "splits"):
            if not (self.root / sub).is_dir():
                raise DatasetError(f"{self.root} is not an IRSTD dataset: no {sub}/ directory")
        split_file = self.root / "splits" / f"{split}.txt"
        if not split_file.is_file():
            known = sorted(p.stem for p in (self.root / "splits").glob("*.txt"))
            raise DatasetError(f"split {split!r} not found in {self.root}/splits (have: {', '.join(known) or 'none'})")
        names = [ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()]
        if not names:
            raise DatasetError(f"split file {split_file} is empty")
        for name in names:
            for sub in ("images", "masks"):
                if not (self.root / sub / f"{name}.png").is_file():
                    raise DatasetError(f"{split_file.name} lists {name!r} but {sub}/{name}.png is missing")
        self.split = split
        self.names = names
        self.protocol = protocol
        self.size = size or paper_size(self.root)

    def __len__(self) -> int:
        return len(self.names)

    def load(self, name: str) -> Sample:
        image = read_image(self.root / "images" / f"{name}.png")
        mask = read_mask(self.root / "masks" / f"{name}.png")
        if image.shape != mask.shape:
            mask = fit_mask(mask, image.shape, name)
        if self.protocol == "paper":
            image, mask = resize_pair(image, mask, self.size)
        return Sample(name, image, mask)

    def __getitem__(self, i: int) -> Sample:
        return self.load(self.names[i])

    def __iter__(self) -> Iterator[Sample]:
        for name in self.names:
            yield self.load(name)
