"""IRSAM's blocks against naive implementations of the paper's equations, TinyViT's layout, the GAD wiring,
cost that follows the frame size, and MobileSAM checkpoints through training's ``init_from``."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from irstd_ros.layers.tinyvit import TinyViT, WindowAttention
from irstd_ros.models import create_model, model_cfg
from irstd_ros.models.irsam import IRSAM, WPMD
from irstd_ros.ops import haar_dwt2d
from training.losses import inner_boundary

MOBILESAM_KEYS = Path(__file__).parent / "data" / "mobilesam_vit_t_keys.json"


def tiny(**over) -> IRSAM:
    return create_model("irsam", **{**model_cfg("irsam").tiny_args, **over})


def naive_wpmd_step(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Eq. 4 pixel by pixel, Haar written out per 2x2 block [[a, b], [c, d]], odd edges repeated."""
    c, h, w = u.shape
    hp, wp = h + h % 2, w + w % 2
    x = torch.zeros(c, hp, wp, dtype=torch.float64)
    for ch, i, j in itertools.product(range(c), range(hp), range(wp)):
        x[ch, i, j] = u[ch, min(i, h - 1), min(j, w - 1)]
    out = x.clone()
    for ch, i, j in itertools.product(range(c), range(0, hp, 2), range(0, wp, 2)):
        a, b, cc, d = x[ch, i, j], x[ch, i, j + 1], x[ch, i + 1, j], x[ch, i + 1, j + 1]
        lh = (a + b - cc - d) / 2          # horizontal detail: rows differ
        hl = (a - b + cc - d) / 2          # vertical detail: columns differ
        g = 1 / (1 + (lh ** 2 + hl ** 2) / k[ch] ** 2)
        p, q = g * lh, g * hl              # W^T(0, p, q, 0) on the block, subtracted
        out[ch, i, j] -= (p + q) / 2
        out[ch, i, j + 1] -= (p - q) / 2
        out[ch, i + 1, j] -= (-p + q) / 2
        out[ch, i + 1, j + 1] -= (-p - q) / 2
    return out[:, :h, :w]


@pytest.mark.parametrize("hw", [(6, 8), (5, 7)])
def test_wpmd_diffusion_matches_eq4_written_out(hw):
    torch.manual_seed(0)
    block = WPMD(3, 4, steps=2).double()
    with torch.no_grad():
        block.log_k.copy_(torch.tensor([-0.5, 0.0, 0.7]))
    u = torch.randn(1, 3, *hw, dtype=torch.float64)
    ref = u[0]
    for _ in range(2):
        ref = naive_wpmd_step(ref, block.log_k.detach().exp())
    got = block.diffuse(u)[0]
    assert torch.allclose(got, ref, atol=1e-12)


def test_wpmd_smooths_flat_regions_and_keeps_edges():
    """Perona-Malik's point: with k far above the detail (g = 1) the LH/HL bands are removed, with k far
    below (g = 0) nothing changes; on noise plus a step, the noise loses energy and the step keeps its height."""
    u = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    block = WPMD(2, 2).double()
    with torch.no_grad():
        block.log_k.fill_(20.0)
        bands = haar_dwt2d(block.diffuse(u)).chunk(4, 1)
        assert bands[1].abs().max() < 1e-12 and bands[2].abs().max() < 1e-12
        assert torch.allclose(bands[0], haar_dwt2d(u).chunk(4, 1)[0]) and torch.allclose(bands[3], haar_dwt2d(u).chunk(4, 1)[3])
        block.log_k.fill_(-20.0)
        assert torch.allclose(block.diffuse(u), u, atol=1e-12)

        gen = torch.Generator().manual_seed(1)
        step = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
        step[..., 15:, :] = 10.0           # an edge inside the 2x2 blocks (rows 14|15)
        noisy = step + 0.1 * torch.randn(step.shape, generator=gen, dtype=torch.float64)
        one = WPMD(1, 1).double()
        one.log_k.fill_(math.log(0.5))     # k between the noise (0.1) and the edge (10)
        out = one.diffuse(noisy)
        flat = (slice(None), slice(None), slice(2, 12), slice(None))
        assert (out[flat] - step[flat]).std() < 0.85 * (noisy[flat] - step[flat]).std()
        assert (out[..., 15, :] - out[..., 14, :]).mean() > 9.0


def test_wpmd_gradients_reach_k_and_the_input():
    block = WPMD(2, 3, stride=2)
    u = torch.randn(1, 2, 9, 11, requires_grad=True)
    block(u).square().sum().backward()
    assert u.grad is not None and block.log_k.grad is not None and block.proj.c.weight.grad is not None


def test_wpmd_starts_closed_for_a_pretrained_encoder_and_open_on_request():
    """Gain 0 (the default, for MobileSAM-initialised encoders): the WPMD branches add exactly nothing at
    first, so the net equals one without WPMD; gain 1 (from-scratch runs) makes them count from the start."""
    x = torch.rand(1, 1, 64, 64)
    torch.manual_seed(0)
    closed = tiny().eval()
    torch.manual_seed(0)
    opened = tiny(wpmd_gain_init=1.0).eval()
    bare = tiny(wpmd_stages=()).eval()
    bare.load_state_dict({k: v for k, v in closed.state_dict().items() if not k.startswith("wpmd.")})
    with torch.no_grad():
        assert torch.equal(closed(x), bare(x))
        assert (opened(x) - closed(x)).abs().max() > 1e-3
    assert all(float(b.proj.bn.weight.min()) == 1.0 for b in opened.wpmd.values())


@pytest.mark.parametrize("window", [7, 14])
def test_attention_bias_index_is_tinyvits_first_seen_offset_enumeration(window):
    points = list(itertools.product(range(window), range(window)))
    seen, idx = {}, []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idx.append(seen.setdefault(off, len(seen)))
    assert len(seen) == window * window
    assert torch.equal(WindowAttention(8, 2, window).attention_bias_idxs, torch.tensor(idx).view(len(points), -1))


def test_window_attention_matches_per_query_loops():
    torch.manual_seed(0)
    attn = WindowAttention(8, 2, 3).double()
    with torch.no_grad():
        attn.attention_biases.normal_()
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    qkv = attn.qkv(attn.norm(x))[0].view(9, 2, 3, 4)
    out = torch.zeros(9, 2, 4, dtype=torch.float64)
    for h, i in itertools.product(range(2), range(9)):
        logits = torch.stack([qkv[i, h, 0] @ qkv[j, h, 1] / 2.0
                              + attn.attention_biases[h, abs(i // 3 - j // 3) * 3 + abs(i % 3 - j % 3)]
                              for j in range(9)])
        out[i, h] = (logits.softmax(0)[:, None] * qkv[:, h, 2]).sum(0)
    assert torch.allclose(attn(x)[0], attn.proj(out.reshape(9, 8)), atol=1e-12)


def test_encoder_stages_have_mobilesams_widths_and_stride_16():
    enc = TinyViT().eval()
    with torch.no_grad():
        emb, inner, outer = enc.forward_stages(torch.rand(1, 1, 96, 80))
    assert emb.shape == (1, 256, 6, 5)
    assert [t.shape[1:] for t in inner] == [(64, 24, 20), (128, 12, 10), (160, 6, 5), (320, 6, 5)]
    assert [t.shape[1] for t in outer] == [128, 160, 320, 320]


def test_gad_masks_use_the_coarse_feature_and_the_edge_the_fine_one():
    """Eqs. 6-9: the shallow and deep encoder features enter X_fine, hence the edge map only; each output is
    a per-pixel dot product of a token's kernel with its feature map."""
    torch.manual_seed(0)
    dec = tiny().decoder.eval()
    emb, sh, dp = torch.randn(1, 32, 2, 3), torch.randn(1, 8, 8, 12), torch.randn(1, 16, 2, 3)
    with torch.no_grad():
        mask, edge = dec(emb, sh, dp)
        mask2, edge2 = dec(emb, sh + 1.0, dp)
        assert mask.shape == (1, 4, 8, 12) and edge.shape == (1, 1, 8, 12)
        assert torch.equal(mask, mask2) and not torch.allclose(edge, edge2)
        tokens, image = dec.transformer(emb + dec.no_mask_embed.weight.view(1, -1, 1, 1),
                                        dec.pe_layer(2, 3)[None], torch.cat([dec.mask_tokens.weight,
                                                                             dec.edge_token.weight])[None])
        coarse = dec.output_upscaling(image.transpose(1, 2).reshape(1, 32, 2, 3))
        fine = coarse + dec.shallow(sh) + dec.deep(dp)
        k_edge, k_mask1 = dec.edge_mlp(tokens[0, -1]), dec.mask_mlps[1](tokens[0, 1])
        for y, x in itertools.product(range(8), range(12)):
            assert torch.allclose(edge[0, 0, y, x], k_edge @ fine[0, :, y, x], atol=1e-5)
            assert torch.allclose(mask[0, 1, y, x], k_mask1 @ coarse[0, :, y, x], atol=1e-5)


def test_native_head_starts_as_the_upsampled_paper_mask():
    torch.manual_seed(0)
    net = tiny().eval()
    x = torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        emb, inner, outer = net.encoder.forward_stages(x, net.wpmd)
        mask, edge = net.decoder(emb, inner[0], outer[-1])
        up = torch.nn.functional.interpolate(mask[:, :1], size=(32, 48), mode="bilinear", align_corners=False)
        assert torch.allclose(net(x), up, atol=1e-6)
        paper = tiny(native_head=False).eval()
        paper.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("head.")})
        assert torch.allclose(paper(x), up, atol=1e-6)


def test_cost_follows_the_frame_size():
    """No resize to 1024 inside: four times the pixels cost about four times the FLOPs."""
    net = create_model("irsam").eval()

    def gflops(h, w):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.rand(1, 1, h, w))
        return counter.get_total_flops() / 1e9
    small, large = gflops(128, 128), gflops(256, 256)
    assert 3.0 < large / small < 4.5, (small, large)
    assert large < 12.0


def test_edge_label_is_the_inner_boundary():
    m = torch.zeros(1, 1, 9, 9)
    m[..., 2:7, 2:7] = 1
    m[..., 0, 8] = 1
    edge = inner_boundary(m)
    assert edge.sum() == 16 + 1 and edge[0, 0, 4, 4] == 0 and edge[0, 0, 2, 2] == 1 and edge[0, 0, 0, 8] == 1


def _mobilesam_state(seed: int = 0):
    shapes = json.loads(MOBILESAM_KEYS.read_text())["shapes"]
    gen = torch.Generator().manual_seed(seed)
    def fake(key, shape):
        if key.endswith("num_batches_tracked"):
            return torch.zeros(shape, dtype=torch.long)
        value = 0.05 * torch.randn(shape, generator=gen)
        return value.abs() + 0.5 if key.endswith("running_var") else value
    return {k: fake(k, s) for k, s in shapes.items()}


def test_mobilesam_checkpoint_initialises_irsam_through_init_from(tmp_path):
    """A bare state dict with MobileSAM's real key names and shapes (dumped from its build_sam_vit_t), saved the
    way mobile_sam.pt is, goes through training's init_from: everything that fits loads, the rest is reported."""
    from training.train import initialise

    state = _mobilesam_state()
    path = tmp_path / "mobile_sam.pt"
    torch.save(state, path)
    net = create_model("irsam")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lines = []
    initialise(net, "irsam", str(path), log=lines.append)
    assert len(lines) == 3 and all(line.startswith(f"init_from {path}: ") for line in lines)
    loaded, new, ignored = lines
    assert "loaded 413 tensors" in loaded and "RGB summed to 1 channel" in loaded
    assert "encoder.layers (280)" in loaded and "decoder.transformer (82)" in loaded and "decoder.mask_mlps (24)" in loaded
    for part in ("wpmd.0", "wpmd.3", "decoder.edge_token", "decoder.shallow", "decoder.deep", "decoder.edge_mlp", "head."):
        assert part in new
    for part in ("mask_decoder.iou_token", "mask_decoder.iou_prediction_head", "prompt_encoder.point_embeddings",
                 "prompt_encoder.mask_downscaling", "image_encoder.head"):
        assert part in ignored
    after = net.state_dict()
    assert torch.equal(after["encoder.layers.2.blocks.5.attn.attention_biases"],
                       state["image_encoder.layers.2.blocks.5.attn.attention_biases"])
    assert torch.equal(after["decoder.transformer.final_attn_token_to_image.q_proj.weight"],
                       state["mask_decoder.transformer.final_attn_token_to_image.q_proj.weight"])
    assert torch.equal(after["decoder.pe_layer.positional_encoding_gaussian_matrix"],
                       state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"])
    assert torch.allclose(after["encoder.patch_embed.seq.0.c.weight"],
                          state["image_encoder.patch_embed.seq.0.c.weight"].sum(1, keepdim=True))
    assert torch.equal(after["decoder.mask_mlps.3.layers.2.weight"],
                       state["mask_decoder.output_hypernetworks_mlps.3.layers.2.weight"])
    assert torch.equal(after["wpmd.1.proj.c.weight"], before["wpmd.1.proj.c.weight"])  # new: left as initialised
    with torch.no_grad():
        assert torch.isfinite(net.eval()(torch.rand(1, 1, 64, 64))).all()


def test_a_mismatched_checkpoint_fails_init_from_in_one_line(tmp_path):
    from training.checkpoint import CheckpointLoadError
    from training.train import initialise

    path = tmp_path / "other.pt"
    torch.save({"encoder.patch_embed.seq.0.c.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointLoadError, match=r"init_from .* does not fit irsam: ") as err:
        initialise(create_model("irsam"), "irsam", str(path))
    assert "\n" not in str(err.value)
