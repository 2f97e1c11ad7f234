"""LRRNet structure and the registry; the pure pipeline around it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from irstd_ros.models import create_model, list_models
from irstd_ros.models.lrrnet import LRRNet, ResBlock, SelfAttention2d
from irstd_ros.pipeline import postprocess, preprocess, restore


def test_registry():
    assert "lrrnet" in list_models()
    assert isinstance(create_model("LRRNet"), LRRNet)
    with pytest.raises(KeyError, match="known models: .*lrrnet"):
        create_model("yolo")


def test_lrrnet_matches_the_paper_layout():
    m = create_model("lrrnet")
    assert m.stride == 16
    assert [s.blocks[0][0].conv.in_channels for s in m.encoder] == [16, 32, 64, 128]
    assert all(len(s.blocks) == 2 for s in m.encoder)
    assert all(len(s.blocks) == 3 for s in m.decoder)  # one more than the encoder stage
    assert isinstance(m.attention, SelfAttention2d) and isinstance(m.subtract, ResBlock)
    assert all(isinstance(u.norm, torch.nn.GroupNorm) for u in m.subtract)
    n = sum(p.numel() for p in m.parameters())
    assert 1e6 < n < 5e6


@pytest.mark.parametrize("hw", [(16, 16), (64, 48), (256, 256)])
def test_lrrnet_shapes_and_gradients(hw):
    m = create_model("lrrnet", channels=(8, 16, 16, 16))
    x = torch.rand(2, 1, *hw)
    logits, recon = m(x, return_reconstruction=True)
    assert logits.shape == recon.shape == (2, 1, *hw)
    (logits.mean() + recon.mean()).backward()
    assert all(p.grad is not None for p in m.parameters())


def test_lrrnet_is_spatially_exact_under_native_padding():
    """Padding (native protocol) keeps a frame's prediction aligned: the crop of the padded run is used."""
    m = create_model("lrrnet", channels=(8, 16, 16, 16)).eval()
    img = np.random.default_rng(0).random((37, 53)).astype(np.float32)
    x, geom = preprocess(img, m.stride)
    assert x.shape[-2:] == (48, 64) and (geom.height, geom.width) == (37, 53)
    with torch.no_grad():
        probs = torch.sigmoid(m(x))[0, 0].numpy()
    out = restore(probs, geom)
    assert out.shape == (37, 53)
    np.testing.assert_array_equal(x[0, 0, :37, :53].numpy(), img)  # the frame itself is untouched


def test_paper_resize_round_trip():
    img = np.zeros((100, 140), np.float32)
    x, geom = preprocess(img, 16, size=256)
    assert x.shape[-2:] == (256, 256) and geom.resized
    assert restore(np.zeros((256, 256), np.float32), geom).shape == (100, 140)
    with pytest.raises(ValueError, match="multiple of the network stride"):
        preprocess(img, 16, size=250)


def test_postprocess_boxes_scores_and_filters():
    p = np.zeros((40, 50), np.float32)
    p[5:8, 10:12] = 0.7          # 6 px, peak 0.9 below
    p[6, 11] = 0.9
    p[30, 40] = 0.6              # 1 px
    p[20:30, 0:10] = 0.8         # 100 px
    mask, dets = postprocess(p, threshold=0.5)
    assert [d.score for d in dets] == pytest.approx([0.9, 0.8, 0.6])
    d = dets[0]
    assert (d.x, d.y, d.width, d.height, d.area) == (10, 5, 2, 3, 6)
    assert (d.cx, d.cy) == pytest.approx((10.5, 6.0))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    _, dets = postprocess(p, threshold=0.5, min_area=2, max_area=50)
    assert [d.area for d in dets] == [6]
    mask, dets = postprocess(p, threshold=0.5, max_detections=1)
    assert len(dets) == 1 and (mask > 0).sum() == 6
    assert postprocess(p, threshold=0.95)[1] == []
