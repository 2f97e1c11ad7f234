"""The dataset reader on every PNG mode, odd sizes, 16-bit data, the real datasets, and its errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from irstd_ros.eval.datasets import IRSTDDataset, paper_size, read_image, read_mask, resize_pair
from irstd_ros.errors import DatasetError

GREY = (np.arange(35 * 17).reshape(17, 35) % 256).astype(np.uint8)  # odd size: 35 x 17


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA"])
def test_every_8bit_mode_reads_as_the_same_grey(tmp_path, mode):
    im = Image.fromarray(GREY, "L").convert(mode)
    im.save(tmp_path / "x.png")
    got = read_image(tmp_path / "x.png")
    assert got.shape == (17, 35) and got.dtype == np.float32
    np.testing.assert_allclose(got, GREY / 255.0, atol=1.5 / 255)  # palette quantisation may be off by one


def test_16bit_png_keeps_its_depth(tmp_path):
    data = (np.arange(64 * 3).reshape(3, 64) * 300).astype(np.uint16)
    Image.fromarray(data).save(tmp_path / "x16.png")
    assert Image.open(tmp_path / "x16.png").mode.startswith("I")
    got = read_image(tmp_path / "x16.png")
    np.testing.assert_allclose(got, data / 65535.0, atol=1e-7)
    assert len(np.unique(got)) == data.size  # not squeezed to 8 bits


def test_mask_binarises_above_127(tmp_path):
    m = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(m).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]


def test_all_modes_in_the_real_sirst_v1(sirst_root):
    ds = IRSTDDataset(sirst_root, "trainval", protocol="native")
    modes = {}
    for name in ds.names:
        modes.setdefault(Image.open(sirst_root / "images" / f"{name}.png").mode, name)
    assert {"RGB", "L", "RGBA", "P"} <= set(modes)
    for mode, name in modes.items():
        s = ds.load(name)
        assert s.image.ndim == 2 and s.image.shape == s.mask.shape
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0 and s.mask.any(), mode


def test_protocols(sirst_root):
    native = IRSTDDataset(sirst_root, "test", protocol="native")
    paper = IRSTDDataset(sirst_root, "test", protocol="paper")
    a, b = native[0], paper[0]
    assert b.image.shape == (256, 256) and b.mask.shape == (256, 256)
    assert a.image.shape == Image.open(sirst_root / "images" / f"{a.name}.png").size[::-1]
    assert len(native) == 86


def test_paper_sizes(datasets_dir):
    assert paper_size(datasets_dir / "sirst-v1") == 256
    assert paper_size(datasets_dir / "nudt-sirst") == 256
    assert paper_size(datasets_dir / "irstd-1k") == 512
    s = IRSTDDataset(datasets_dir / "irstd-1k", "test", protocol="paper")[0]
    assert s.image.shape == (512, 512)


def test_missing_mask_names_the_file(tmp_path, sirst_root):
    from conftest import make_subset
    root = make_subset(sirst_root, tmp_path / "d", {"test": ["Misc_1", "Misc_10"]})
    (root / "masks" / "Misc_10.png").unlink()
    with pytest.raises(DatasetError, match=r"lists 'Misc_10' but masks/Misc_10.png is missing"):
        IRSTDDataset(root, "test")


@pytest.mark.parametrize("setup, message", [
    (lambda r: None, "dataset directory not found"),
    (lambda r: (r / "images").mkdir(parents=True), "no masks/ directory"),
])
def test_bad_roots(tmp_path, setup, message):
    root = tmp_path / "nope"
    setup(root)
    with pytest.raises(DatasetError, match=message):
        IRSTDDataset(root, "test")


def test_unknown_split_lists_the_known_ones(sirst_root):
    with pytest.raises(DatasetError, match="split 'tset' not found.*test, train, trainval, val"):
        IRSTDDataset(sirst_root, "tset")


def test_unknown_protocol(sirst_root):
    with pytest.raises(DatasetError, match="unknown protocol"):
        IRSTDDataset(sirst_root, "test", protocol="stretch")


def test_corrupt_and_mismatched_files(tmp_path, sirst_root):
    from conftest import make_subset
    root = make_subset(sirst_root, tmp_path / "d", {"test": ["Misc_1", "Misc_10"]})
    (root / "images" / "Misc_1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    ds = IRSTDDataset(root, "test")
    with pytest.raises(DatasetError, match="cannot read image"):
        ds.load("Misc_1")
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(root / "masks" / "Misc_10.png")
    with pytest.raises(DatasetError, match="mask is 7x5 .different aspect ratio"):
        ds.load("Misc_10")


def test_a_mask_at_another_resolution_is_fitted_to_its_image(sirst_root):
    """SIRST-v1 ships Misc_111 (test split) with a 592x400 mask for a 325x220 image."""
    s = IRSTDDataset(sirst_root, "test", protocol="native").load("Misc_111")
    assert s.image.shape == s.mask.shape == (220, 325)
    assert 25 < s.mask.sum() < 50  # 121 target pixels at 592x400, about 37 at the image's scale


@pytest.mark.parametrize("width,height", [(320, 240), (200, 150), (456, 388), (135, 96)])
def test_paper_resize_keeps_the_mask_on_its_target(width, height):
    """The resized mask must sit where the bilinear-resized image puts the target. OpenCV's
    plain INTER_NEAREST shifts it by about half a pixel down-right: a large error for a
    4x4 target."""
    rng = np.random.default_rng(width)
    yy, xx = np.mgrid[:256, :256]
    shifts = []
    for _ in range(20):
        mask = np.zeros((height, width), bool)
        y, x = rng.integers(8, height - 8), rng.integers(8, width - 8)
        mask[y:y + 4, x:x + 4] = True
        img, m = resize_pair(mask.astype(np.float32), mask, 256)
        img_c = np.array([(img * yy).sum(), (img * xx).sum()]) / img.sum()
        ys, xs = np.nonzero(m)
        shifts.append(np.array([ys.mean(), xs.mean()]) - img_c)
    shifts = np.array(shifts)
    assert np.abs(shifts.mean(axis=0)).max() < 0.1, shifts.mean(axis=0)   # no systematic shift
    assert np.abs(shifts).max() <= 0.5, np.abs(shifts).max()               # only quantisation


def test_paper_masks_of_real_frames_line_up_with_their_images(sirst_root):
    """On the real SIRST-v1 test frames: the paper-protocol mask's centroid against the
    native mask's centroid mapped through the resize (pixel-centre convention). Per frame
    it moves with quantisation (tiny targets gain or lose pixels), but on average it must
    not drift, as OpenCV's plain INTER_NEAREST does (by over 0.4 px on each axis here)."""
    native = IRSTDDataset(sirst_root, "test", protocol="native")
    paper = IRSTDDataset(sirst_root, "test", protocol="paper")

    def drift(mask, resized):
        sy, sx = 256 / mask.shape[0], 256 / mask.shape[1]
        ya, xa = np.nonzero(mask)
        yb, xb = np.nonzero(resized)
        want = np.array([(ya.mean() + 0.5) * sy - 0.5, (xa.mean() + 0.5) * sx - 0.5])
        return np.array([yb.mean(), xb.mean()]) - want

    ours, floor_sampled = [], []
    for name in native.names:
        mask = native.load(name).mask
        ours.append(drift(mask, paper.load(name).mask))
        floor_sampled.append(drift(mask, cv2.resize(mask.astype(np.uint8), (256, 256),
                                                    interpolation=cv2.INTER_NEAREST)))
    assert np.abs(np.mean(ours, axis=0)).max() < 0.25, np.mean(ours, axis=0)
    assert np.mean(floor_sampled, axis=0).min() > 0.4, np.mean(floor_sampled, axis=0)  # what the test guards against


def test_paper_masks_match_pil_nearest_as_in_the_papers_code(sirst_root):
    """The papers' loaders resize masks with PIL's NEAREST; ours must give the same pixels."""
    native = IRSTDDataset(sirst_root, "test", protocol="native")
    for name in native.names:
        mask = native.load(name).mask
        pil = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((256, 256), Image.NEAREST)) > 127
        _, ours = resize_pair(mask.astype(np.float32), mask, 256)
        assert np.array_equal(ours, pil), name
