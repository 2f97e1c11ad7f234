"""irstd-eval end to end with the shipped LRRNet weights on real SIRST-v1 frames."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from irstd_ros.runtime.checkpoints import default_weights, ships_weights
from irstd_ros.eval.datasets import IRSTDDataset, read_mask
from irstd_ros.eval.metrics import MetricAccumulator

from conftest import architectures, tiny_checkpoint

EVAL = [sys.executable, "-m", "irstd_ros.cli.eval"]


def run(*args):
    return subprocess.run([*EVAL, *map(str, args)], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def paper_run(sirst_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    r = run("--model", "lrrnet", "--data", sirst_root, "--split", "test", "--protocol", "paper",
            "--json", out / "m.json", "--plots", out / "plots", "--bootstrap", 1000)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "m.json").read_text()), out, r.stdout


def test_shipped_weights_hold_their_measured_quality_on_sirst_v1_test(paper_run):
    """The issue's first bar on SIRST-v1 test, paper protocol: IoU >= 0.65, Pd >= 0.93,
    Fa <= 2e-5, with a regression floor just under what the shipped weights measured
    (README, Results): IoU 0.708, nIoU 0.688, Pd 0.963, Fa 1.15e-5 at the card's threshold."""
    res, _, stdout = paper_run
    assert res["n_images"] == 86 and res["protocol"] == "paper" and res["input_size"] == 256
    assert res["threshold"] == 0.95  # the operating point chosen on the val split
    assert res["iou"] >= 0.69, res
    assert res["niou"] >= 0.67, res
    assert res["pd"] >= 0.95, res
    assert res["fa"] <= 2e-5, res
    assert "IoU" in stdout and "Pd" in stdout


def test_json_has_the_documented_keys_as_plain_numbers(paper_run):
    res, _, _ = paper_run
    for k in ("iou", "niou", "pd", "fa", "auc", "n_images", "n_targets", "fps", "latency_ms_median"):
        assert isinstance(res[k], (int, float)), k
    assert 0 < res["fa"] < 1e-3  # a plain fraction, not 1e-6 units
    assert 0.5 < res["auc"] <= 1.0
    assert res["fps"] == pytest.approx(1e3 / res["latency_ms_median"])


def test_bootstrap_intervals_bracket_the_point_estimates(paper_run):
    res, _, stdout = paper_run
    assert res["ci95_resamples"] == 1000 and "95% CI over images" in stdout
    for k in ("iou", "niou", "pd", "fa"):
        lo, hi = res["ci95"][k]
        assert lo <= res[k] <= hi and lo < hi, (k, res["ci95"][k], res[k])
    # 86 frames cannot pin IoU to better than a few hundredths
    assert res["ci95"]["iou"][1] - res["ci95"]["iou"][0] > 0.02


def test_plots_are_written(paper_run):
    _, out, _ = paper_run
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "roc.png" in pngs and sum(p.startswith("overlay_") for p in pngs) == 6


def test_saved_masks_agree_with_the_json(sirst_root, tmp_path):
    r = run("--data", sirst_root, "--split", "test", "--protocol", "native", "--limit", "12",
            "--json", tmp_path / "m.json", "--save-masks", tmp_path / "masks", "--threshold", "0.4")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "m.json").read_text())
    ds = IRSTDDataset(sirst_root, "test", protocol="native")
    acc = MetricAccumulator(threshold=0.5, curve_thresholds=())
    for name in ds.names[:12]:
        saved = read_mask(tmp_path / "masks" / f"{name}.png")
        sample = ds.load(name)
        assert saved.shape == sample.mask.shape, name  # native size
        acc.update(saved.astype(np.float32), sample.mask)
    again = acc.summary()
    for k in ("iou", "niou", "pd", "fa", "n_targets"):
        assert again[k] == res[k], k
    assert sorted(p.stem for p in (tmp_path / "masks").iterdir()) == sorted(ds.names[:12])


def test_paper_protocol_masks_come_back_at_native_size(sirst_root, tmp_path):
    r = run("--data", sirst_root, "--limit", "2", "--save-masks", tmp_path)
    assert r.returncode == 0, r.stderr
    name = IRSTDDataset(sirst_root, "test").names[0]
    from PIL import Image
    assert Image.open(tmp_path / f"{name}.png").size == Image.open(sirst_root / "images" / f"{name}.png").size


def _one_line_error(r, fragment):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("irstd-eval: error:"), r.stderr
    assert fragment in lines[0], lines[0]


def test_bad_inputs_give_one_line_errors(sirst_root, tmp_path):
    _one_line_error(run("--data", tmp_path / "nope"), "dataset directory not found")
    _one_line_error(run("--data", sirst_root, "--split", "nope"), "split 'nope' not found")
    _one_line_error(run("--data", sirst_root, "--threshold", "1.5"), "--threshold must be in (0, 1)")
    _one_line_error(run("--data", sirst_root, "--bootstrap", "-5"), "--bootstrap must be >= 0")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    _one_line_error(run("--data", sirst_root, "--weights", bad), "corrupt or not a torch checkpoint")
    _one_line_error(run("--data", sirst_root, "--weights", tmp_path / "missing.pt"), "checkpoint not found")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(default_weights("lrrnet").read_bytes()[:5000])
    _one_line_error(run("--data", sirst_root, "--weights", trunc), "corrupt")
    other = tmp_path / "other.pt"
    torch.save({"model": "irmamba", "state_dict": {}}, other)
    _one_line_error(run("--data", sirst_root, "--weights", other), "is for model 'irmamba'")
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": "lrrnet", "model_args": {}, "state_dict": {"stem.weight": torch.zeros(3)}}, wrong)
    _one_line_error(run("--data", sirst_root, "--weights", wrong), "does not fit lrrnet")


def test_shipped_weights_have_a_model_card():
    card = json.loads(default_weights("lrrnet").with_suffix(".json").read_text())
    assert card["model"] == "lrrnet" and card["epochs_trained"] > 0
    # the final fit on all of SIRST-v1 trainval (the test split is never trained on) ...
    assert [d["train_split"] for d in card["data"]] == ["trainval"] and "val_split" not in card["data"][0]
    assert card["selected_by"].startswith("final epoch") and card["epochs_trained"] == card["epochs_planned"]
    assert {"paper", "native"} <= set(card["test_metrics"])
    # ... keeps the threshold its train/val stage chose on val
    sel = card["threshold_selection"]
    assert sel["split"] == "val" and sel["inherited_from"] == "lrrnet_sirst-v1" and 0 < card["threshold"] < 1
    assert sel["val_metrics"]["threshold"] == card["threshold"]
    size = default_weights("lrrnet").stat().st_size
    assert size < 8e6


@pytest.mark.parametrize("name", architectures())
def test_eval_runs_every_model_from_a_checkpoint(name, tiny_sirst, tmp_path):
    """irstd-eval --model <name> --weights <ckpt> on real frames, both protocols: the CLI path every new
    model takes before its weights ship (a test-sized, untrained network: this checks the path, not quality)."""
    ckpt = tiny_checkpoint(tmp_path / f"{name}.pt", name)
    for protocol in ("paper", "native"):
        out = tmp_path / f"{protocol}.json"
        r = run("--model", name, "--weights", ckpt, "--data", tiny_sirst, "--split", "val", "--protocol", protocol,
                "--json", out)
        assert r.returncode == 0, r.stderr
        res = json.loads(out.read_text())
        assert res["n_images"] == 4 and res["protocol"] == protocol and res["model"] == name, res
        assert 0.0 <= res["iou"] <= 1.0 and res["threshold"] == 0.5   # no card: the default threshold
    if not ships_weights(name):  # nothing ships yet: the CLI says so in one line
        r = run("--model", name, "--data", tiny_sirst, "--split", "val")
        assert r.returncode == 2 and "no shipped weights" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_knobs_are_checked_against_the_model(sirst_root):
    _one_line_error(run("--data", sirst_root, "--knob", "mode=ce", "--limit", "1"), "lrrnet has no knob(s) mode")
    _one_line_error(run("--data", sirst_root, "--knob", "mode"), "--knob takes NAME=VALUE")


def test_a_progress_bar_on_a_terminal_and_silence_when_piped(sirst_root, paper_run):
    """The piped run above wrote no bar; the same command with stderr on a pseudo-terminal shows one."""
    import fcntl
    import os
    import pty
    import struct
    import termios
    _, _, stdout = paper_run
    assert "it/s" not in stdout and "%|" not in stdout
    piped = run("--data", sirst_root, "--split", "val", "--limit", 3)
    assert piped.returncode == 0 and "%|" not in piped.stderr, piped.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([*EVAL, "--data", str(sirst_root), "--split", "val", "--limit", "3"],
                            stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    proc.communicate(timeout=300)
    os.close(leader)
    assert proc.returncode == 0
    assert b"eval lrrnet/torch" in seen and b"0/3 [" in seen and b"it/s" in seen, seen[-500:]
