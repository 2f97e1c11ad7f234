"""IRSTD-Diff's parts against independent formulations: LIW (eqs. 17-20) on the reference Haar filters, the
shifted-window Swin block against per-pixel loops, the DDPM/DDIM algebra, the CE run once per frame, seeded
sampling, and the serving knobs."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from irstd_ros.layers.diffusion_unet import GaussianDiffusion
from irstd_ros.layers.swin import SwinBlock
from irstd_ros.models import create_model, model_cfg
from irstd_ros.models.irstd_diff import IRSTDDiff, LowFrequencyIsolation
from irstd_ros.ops import haar_dwt2d_reference

from conftest import tiny_checkpoint, visible_noise


def tiny(**over) -> IRSTDDiff:
    return create_model("irstd_diff", **{**model_cfg("irstd_diff").tiny_args, **over})


def naive_idwt(bands: torch.Tensor) -> torch.Tensor:
    """Inverse Haar per 2x2 block, written out (LL, LH, HL, HH band-major)."""
    ll, lh, hl, hh = bands.chunk(4, 1)
    out = torch.zeros(bands.shape[0], ll.shape[1], 2 * ll.shape[2], 2 * ll.shape[3], dtype=bands.dtype)
    out[..., 0::2, 0::2] = (ll + lh + hl + hh) / 2
    out[..., 0::2, 1::2] = (ll + lh - hl - hh) / 2
    out[..., 1::2, 0::2] = (ll - lh + hl - hh) / 2
    out[..., 1::2, 1::2] = (ll - lh - hl + hh) / 2
    return out


def test_liw_is_eqs_17_to_20_on_the_reference_haar():
    torch.manual_seed(0)
    liw = LowFrequencyIsolation(4, levels=2, heads=2, window=2).double()
    f = torch.randn(1, 4, 16, 12, dtype=torch.float64)
    b1 = haar_dwt2d_reference(f)                              # eq. 17, k = 1
    l1, h1 = b1[:, :4], b1[:, 4:]
    f1 = liw.swin[0](l1)                                      # eq. 18
    b2 = haar_dwt2d_reference(f1)                             # eq. 17, k = 2
    l2, h2 = b2[:, :4], b2[:, 4:]
    lt2 = liw.swin[1](l2)                                     # L̃^K = f^K
    lt1 = liw.convs[1](naive_idwt(torch.cat([lt2, h2], 1)))   # eq. 19, k = 2
    r = liw.convs[0](naive_idwt(torch.cat([lt1, h1], 1)))     # eq. 20, RO
    assert torch.allclose(liw(f), f + r, atol=1e-12)


def naive_swin(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel loops: each pixel attends to the pixels of its (shifted) window, a shifted window never wrapping
    around the border, with the bias of the signed offset between them."""
    _, c, h, w = x.shape
    ws, s, heads = block.window, block.shift, block.heads
    t = x[0].permute(1, 2, 0)
    y = block.norm1(t)
    qkv = block.qkv(y).view(h, w, 3, heads, c // heads)
    out = torch.zeros(h, w, heads, c // heads, dtype=x.dtype)
    group = lambda v: (v + (ws - s if s else 0)) // ws  # noqa: E731
    for i, j, hd in itertools.product(range(h), range(w), range(heads)):
        members = [(a, b) for a in range(h) for b in range(w) if group(a) == group(i) and group(b) == group(j)]
        logits = torch.stack([qkv[i, j, 0, hd] @ qkv[a, b, 1, hd] / math.sqrt(c // heads)
                              + block.bias_table[(i - a + ws - 1) * (2 * ws - 1) + (j - b + ws - 1), hd]
                              for a, b in members])
        wts = logits.softmax(0)
        out[i, j, hd] = sum(wt * qkv[a, b, 2, hd] for wt, (a, b) in zip(wts, members))
    t = t + block.proj(out.reshape(h, w, c))
    t = t + block.mlp(block.norm2(t))
    return t.permute(2, 0, 1)[None]


@pytest.mark.parametrize("shift", [False, True])
def test_swin_block_matches_per_pixel_loops(shift):
    torch.manual_seed(0)
    block = SwinBlock(4, 2, window=4, shift=shift).double()
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    assert torch.allclose(block(x), naive_swin(block, x), atol=1e-10)


def test_swin_block_runs_at_sizes_that_are_not_whole_windows():
    block = SwinBlock(8, 2, window=8, shift=True)
    assert block(torch.randn(2, 8, 13, 21)).shape == (2, 8, 13, 21)


def test_forward_process_and_ddpm_mean_are_the_papers_equations():
    d = GaussianDiffusion(100)
    betas = d.betas
    assert torch.allclose(torch.prod(1 - betas[:37]), d.alphas_bar[36])               # ᾱ_t = Π α_s
    x0 = torch.rand(1, 1, 4, 4, dtype=torch.float64) * 1.6 - 0.8                        # inside the clip range
    eps = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    t = 40
    xt = d.q_sample(x0, torch.tensor([t]), eps)
    assert torch.allclose(xt, d.alphas_bar[t].sqrt() * x0 + (1 - d.alphas_bar[t]).sqrt() * eps)   # eq. 4
    # eq. 13: μ = (x_t - β_t/sqrt(1-ᾱ_t) ε) / sqrt(α_t), the same as the posterior mean from the x0 prediction
    mu = (xt - betas[t] / (1 - d.alphas_bar[t]).sqrt() * eps) / (1 - betas[t]).sqrt()
    assert torch.allclose(d.ddpm_step(xt, t, eps, None), mu, atol=1e-10)
    noise = torch.randn_like(xt)
    assert torch.allclose(d.ddpm_step(xt, t, eps, noise), mu + betas[t].sqrt() * noise, atol=1e-10)  # eq. 14


def test_ddim_with_the_true_noise_lands_on_the_forward_process():
    d = GaussianDiffusion(100)
    x0 = torch.rand(1, 1, 4, 4, dtype=torch.float64) * 1.6 - 0.8
    eps = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    xt = d.q_sample(x0, torch.tensor([80]), eps)
    assert torch.allclose(d.ddim_step(xt, 80, 30, eps), d.q_sample(x0, torch.tensor([30]), eps), atol=1e-10)
    assert torch.allclose(d.ddim_step(xt, 80, -1, eps), x0, atol=1e-10)
    assert d.ddim_timesteps(1) == [99] and d.ddim_timesteps(100) == list(range(99, -1, -1))
    assert d.ddim_timesteps(4) == [99, 66, 33, 0]


def test_the_ce_runs_once_per_frame_and_the_unet_once_per_step():
    net = tiny(sampling_steps=4).eval()
    calls = {"ce": 0, "unet": 0}
    net.ce.register_forward_hook(lambda *a: calls.__setitem__("ce", calls["ce"] + 1))
    net.unet.out.register_forward_hook(lambda *a: calls.__setitem__("unet", calls["unet"] + 1))
    with torch.no_grad():
        net(torch.rand(1, 1, 64, 64))
    assert calls == {"ce": 1, "unet": 4}
    calls.update(ce=0, unet=0)
    net.configure(sampler="ddpm")
    with torch.no_grad():
        net(torch.rand(1, 1, 64, 64))
    assert calls == {"ce": 1, "unet": net.diffusion.T}
    calls.update(ce=0, unet=0)
    net.configure(mode="ce")
    with torch.no_grad():
        net(torch.rand(1, 1, 64, 64))
    assert calls == {"ce": 1, "unet": 0}


def test_sampling_is_seeded_and_the_seed_matters():
    torch.manual_seed(0)
    net = tiny(sampling_steps=3).eval()
    visible_noise(net)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = net(x), net(x)
        net.configure(seed=1)
        c = net(x)
        net.configure(sampler="ddpm", seed=0)
        d1, d2 = net(x), net(x)
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(d1, d2)


def test_modes_and_the_fused_blend():
    torch.manual_seed(0)
    net = tiny(sampling_steps=2).eval()
    visible_noise(net)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        net.configure(mode="ce")
        p = torch.sigmoid(net(x))
        net.configure(mode="diffusion")
        s = torch.sigmoid(net(x))
        net.configure(mode="fused")
        f = torch.sigmoid(net(x))
    expected = torch.where((p > 0.5) == (s > 0.5), (p + s) / 2, p + s / 4).clamp(1e-4, 1 - 1e-4)
    assert torch.allclose(f, expected, atol=1e-4)


@pytest.mark.parametrize("knob", [{"mode": "gan"}, {"sampler": "dpm"}, {"sampling_steps": 0},
                                  {"sampling_steps": 21}])
def test_bad_knobs_are_refused_with_a_reason(knob):
    net = tiny()
    with pytest.raises(ValueError, match=next(iter(knob))):
        net.configure(**knob)
    assert (net.mode, net.sampler, net.sampling_steps) == ("diffusion", "ddim", 2)


def test_training_draw_gives_every_part_a_gradient():
    from training.losses import build_loss
    torch.manual_seed(0)
    net = tiny()
    loss_fn = build_loss("irstd_diff", {})
    x = torch.rand(2, 1, 64, 64)
    y = (torch.rand_like(x) > 0.98).float()
    loss, parts = loss_fn(loss_fn.predict(net, x, y), x, y)
    loss.backward()
    assert set(parts) == {"seg", "diffusion"} and loss_fn.ce_weight == 10.0
    for part in (net.ce, net.liw, net.inject, net.unet):
        assert all(p.grad is not None for p in part.parameters())
    with pytest.raises(ValueError, match="noises the target"):
        loss_fn.predict(net, x)


def test_paper_configuration_parts():
    net = create_model("irstd_diff")
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    assert abs(count(net.unet) - 29.7) < 0.1           # the authors' code: 39.6 M - CE 9.8 M - LIW 0.15 M
    assert 0.1 < count(net.liw) < 0.2
    assert net.stride == 32 and net.diffusion.T == 100


def test_detector_knobs_apply_refuse_and_auto_restores_the_shipped_setting(tmp_path):
    from irstd_ros.runtime.detector import Detector, DetectorConfig
    path = tiny_checkpoint(tmp_path / "irstd_diff_tiny.pt", "irstd_diff", mode="ce", sampling_steps=3)
    det = Detector(DetectorConfig(model="irstd_diff", weights=str(path), knobs={"mode": "auto", "sampling_steps": 0}))
    assert (det.model.mode, det.model.sampling_steps) == ("ce", 3)             # auto: as the weights were shipped
    det.set_knobs({"mode": "diffusion", "sampling_steps": 5})
    assert (det.model.mode, det.model.sampling_steps) == ("diffusion", 5)
    assert "sampling_steps must be in [1, 20]" in det.knob_problem({"sampling_steps": 21})
    assert det.knob_problem({"temperature": 1}).startswith("irstd_diff has no knob(s) temperature")
    det.set_knobs({"mode": "auto", "sampling_steps": 0})
    assert (det.model.mode, det.model.sampling_steps) == ("ce", 3)
    image = torch.rand(40, 56).numpy()
    det.set_knobs({"mode": "diffusion", "seed": 7})
    assert (det.probabilities(image) == det.probabilities(image)).all()         # seeded: eval is reproducible
    with pytest.raises(ValueError, match="mode must be one of"):
        Detector(DetectorConfig(model="irstd_diff", weights=str(path), knobs={"mode": "gan"}))


def test_knob_parameters_are_declared_per_model_with_ranges():
    from irstd_ros.ros.node_params import knob_specs, split_knob, validate
    specs = knob_specs()
    assert {"irstd_diff.mode", "irstd_diff.sampler", "irstd_diff.sampling_steps", "irstd_diff.seed"} <= set(specs)
    assert split_knob("irstd_diff.sampling_steps") == ("irstd_diff", "sampling_steps") and split_knob("threshold") is None
    assert validate("irstd_diff.mode", "gan") and validate("irstd_diff.mode", "ce") is None
    assert validate("irstd_diff.sampling_steps", -1) and validate("irstd_diff.sampling_steps", 0) is None


def test_sampling_is_chosen_on_val_and_ships_with_the_weights(tmp_path, tiny_sirst):
    """A short real training run, training.choose_sampling on its val split (test refused), and the export
    writing the chosen mode and steps into the weights, which the Detector then runs by default."""
    import json
    import subprocess
    import sys

    import yaml

    from conftest import REPO
    from irstd_ros.runtime.detector import Detector, DetectorConfig
    from training import choose_sampling, export_weights

    cfg = {"model": "irstd_diff", "model_args": dict(model_cfg("irstd_diff").tiny_args),
           "datasets": [{"root": str(tiny_sirst), "train_split": "train", "val_split": "val"}],
           "crop_size": 64, "batch_size": 2, "epochs": 1, "val_every": 1, "compile": False, "precision": "fp32",
           "threads": 1, "out_dir": str(tmp_path / "runs"), "name": "tiny", "loss": {}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "training.train", "--config", str(tmp_path / "tiny.yaml"),
                        "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    best = tmp_path / "runs" / "tiny" / "best.pt"
    assert choose_sampling.main([str(best), "--data", str(tiny_sirst), "--split", "test"]) == 2
    out = tmp_path / "sampling.json"
    assert choose_sampling.main([str(best), "--data", str(tiny_sirst), "--split", "val", "--max-steps", "4",
                                 "--limit", "2", "--json", str(out)]) == 0
    sweep = json.loads(out.read_text())
    labels = [row["label"] for row in sweep["rows"]]
    assert labels[:4] == ["CE alone", "diffusion, DDIM 1", "diffusion, DDIM 2", "diffusion, DDIM 4"]
    assert labels[-1].startswith("fused (CE + sample), DDIM")     # measured whichever mode is chosen
    # a run's last.pt (optimizer state and all) is scored as well as its best.pt
    assert choose_sampling.main([str(best.with_name("last.pt")), "--data", str(tiny_sirst), "--split", "val",
                                 "--max-steps", "1", "--limit", "1"]) == 0
    best_iou = max(row["iou"] for row in sweep["rows"] if row["knobs"]["mode"] != "fused")
    chosen = next(row for row in sweep["rows"] if row["knobs"] == sweep["default"])
    assert chosen["iou"] >= best_iou - 0.01
    dst = tmp_path / "irstd_diff_tiny.pt"
    assert export_weights.main([str(best), str(dst), "--knobs-from", str(out)]) == 0
    card = json.loads(dst.with_suffix(".json").read_text())
    assert card["sampling_selection"]["default"] == sweep["default"]
    det = Detector(DetectorConfig(model="irstd_diff", weights=str(dst)))
    for name, value in sweep["default"].items():
        assert det.knob_values()[name] == value
    # the threshold is calibrated on the output that ships: calibrate's --knob reaches the Detector it sweeps
    # (training.ship passes the chosen knobs; before, it swept the training config's mode whatever shipped)
    from training import calibrate
    rows = {}
    for mode in ("ce", "diffusion"):
        cal = tmp_path / f"calibration_{mode}.json"
        assert calibrate.main([str(best), "--model", "irstd_diff", "--data", str(tiny_sirst), "--split", "val",
                               "--knob", f"mode={mode}", "--knob", "sampling_steps=1", "--json", str(cal)]) == 0
        got = json.loads(cal.read_text())
        assert got["knobs"] == {"mode": mode, "sampling_steps": 1}
        rows[mode] = [(r["iou"], r["fa"]) for r in got["rows"]]
    assert rows["ce"] != rows["diffusion"]
