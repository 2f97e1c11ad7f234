"""Training: exact resume after a real SIGKILL, DDP replicas staying identical, and clear config errors."""
from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, architectures

PY = sys.executable


def tiny_config(tmp_path: Path, data: Path, **extra) -> Path:
    cfg = {
        "model": "lrrnet", "model_args": {"channels": [8, 16, 16, 16]},
        "datasets": [{"root": str(data), "train_split": "train", "val_split": "val"}],
        "crop_size": 32, "batch_size": 2, "epochs": 3, "val_every": 1, "compile": False,
        "precision": "fp32", "threads": 1, "out_dir": str(tmp_path / "runs"), "name": "tiny",
        "schedule": {"name": "poly", "warmup_epochs": 1},
    }
    cfg.update(extra)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_cmd(config: Path, *extra: str):
    return [PY, "-m", "training.train", "--config", str(config), "--no-progress", *extra]


def run(cmd, **kw):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, **kw)


def weights(path: Path, key: str = "model"):
    return torch.load(path, map_location="cpu", weights_only=False)[key]


@pytest.mark.parametrize("name", architectures())
def test_resume_after_sigkill_reproduces_the_uninterrupted_run(tmp_path, tiny_sirst, name):
    """Every registered model (its test-sized variant, its own loss) resumes bit-exactly after a SIGKILL."""
    from irstd_ros.models import model_cfg
    model = {"model": name, "model_args": dict(model_cfg(name).tiny_args)}
    straight = tiny_config(tmp_path / "a", tiny_sirst, ema_decay=0.9, **model)
    r = run(train_cmd(straight))
    assert r.returncode == 0, r.stderr
    reference = weights(tmp_path / "a" / "runs" / "tiny" / "last.pt")
    reference_ema = weights(tmp_path / "a" / "runs" / "tiny" / "last.pt", "ema")

    killed = tiny_config(tmp_path / "b", tiny_sirst, ema_decay=0.9, **model)
    log = tmp_path / "b" / "runs" / "tiny" / "metrics.jsonl"
    proc = subprocess.Popen(train_cmd(killed), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = log.read_text().count("\n")
    assert 1 <= done < 3, "the kill should land after the first epoch and before the last"

    r = run(train_cmd(killed))
    assert r.returncode == 0, r.stderr
    assert f"resuming tiny from epoch {done}" in r.stdout
    resumed = weights(tmp_path / "b" / "runs" / "tiny" / "last.pt")
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
    # the weight average resumes too, and it is not the raw weights
    resumed_ema = weights(tmp_path / "b" / "runs" / "tiny" / "last.pt", "ema")
    for k in reference_ema:
        assert torch.equal(resumed_ema[k], reference_ema[k]), k
    assert any(not torch.equal(resumed_ema[k], reference[k]) for k in reference if reference[k].is_floating_point())
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    assert all("val" in x and 0.0 <= x["val"]["iou"] <= 1.0 for x in lines)
    assert (tmp_path / "b" / "runs" / "tiny" / "best.pt").is_file()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_sirst):
    cfg = tiny_config(tmp_path, tiny_sirst)
    last = tmp_path / "runs" / "tiny" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 truncated")
    r = run(train_cmd(cfg))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("irstd-train: error: cannot resume from")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("patch, message", [
    ({"optimizer": {"name": "sgd"}}, "optimizer must be one of"),
    ({"ema_decay": 1.0}, "ema_decay must be in"),
    ({"crop_size": 30}, "multiple of 16"),
    ({"datasets": []}, "no datasets"),
    ({"learning_rate": 1}, "unknown config key 'learning_rate'"),
    ({"distill": {"model": "nonet"}}, "distill: unknown model"),
    ({"distill": {"model": "lrrnet", "weight": 0}}, "must be positive"),
])
def test_config_errors(tmp_path, tiny_sirst, patch, message):
    cfg = tiny_config(tmp_path, tiny_sirst, **patch) if "learning_rate" not in patch else None
    if cfg is None:
        cfg = tiny_config(tmp_path, tiny_sirst)
        raw = yaml.safe_load(cfg.read_text())
        raw.update(patch)
        cfg.write_text(yaml.safe_dump(raw))
    r = run(train_cmd(cfg))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_ddp_two_processes_keep_identical_replicas(tmp_path, tiny_sirst):
    cfg = tiny_config(tmp_path, tiny_sirst, epochs=1)
    torchrun = Path(PY).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "training.train",
             "--config", str(cfg), "--no-progress", "--save-replicas"], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "runs" / "tiny"
    a = torch.load(out / "replica0.pt", weights_only=True)
    b = torch.load(out / "replica1.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and they trained: 12 samples / (2 per rank x 2 ranks) = 3 optimizer steps moved the weights
    torch.manual_seed(0)
    from irstd_ros.models import create_model
    init = create_model("lrrnet", channels=[8, 16, 16, 16]).state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a if a[k].is_floating_point())
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["step"] == 3


def test_ddp_backend_follows_the_training_device():
    """NCCL only when the model trains on CUDA: a CPU model on a CUDA machine needs gloo (NCCL has no CPU
    tensors). The two-process test above is the end-to-end check; on a CUDA machine it failed before this fix."""
    from training.train import process_group_backend
    assert process_group_backend(torch.device("cpu")) == "gloo"
    assert process_group_backend(torch.device("cuda", 0)) == "nccl"


def test_error_breakdown_accounts_for_every_lost_pixel(tiny_sirst, capsys):
    """Its IoU equals the metrics module's, and missed + false pixels = union - intersection."""
    from irstd_ros.eval.datasets import IRSTDDataset, paper_size
    from irstd_ros.runtime.detector import Detector, DetectorConfig
    from irstd_ros.eval.metrics import MetricAccumulator
    from training import error_breakdown

    assert error_breakdown.main([str(REPO / "irstd_ros/weights/lrrnet_sirst-v1.pt"), "--data", str(tiny_sirst),
                                 "--split", "train", "--threshold", "0.5"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    numbers = [float(x) for x in re.findall(r"[-+]?\d*\.\d+|\d+", head.split(":", 1)[1])]
    iou, inter, union, missed, near, far = numbers
    assert missed + near + far == union - inter
    acc = MetricAccumulator(threshold=0.5, curve_thresholds=())
    det = Detector(DetectorConfig(weights=str(REPO / "irstd_ros/weights/lrrnet_sirst-v1.pt")))
    for s in IRSTDDataset(tiny_sirst, "train", protocol="paper", size=paper_size(tiny_sirst)):
        acc.update(det.probabilities(s.image), s.mask)
    assert abs(acc.summary()["iou"] - iou) < 1e-4


def test_a_trainval_fit_exports_with_its_predecessors_threshold(tmp_path, tiny_sirst):
    """No val split: the final epoch ships, the card says so and keeps the val-chosen threshold
    of the card it inherits from; the detector then runs at that threshold."""
    from irstd_ros.runtime.checkpoints import card_threshold
    from training import export_weights

    cfg = tiny_config(tmp_path, tiny_sirst, epochs=1,
                      datasets=[{"root": str(tiny_sirst), "train_split": "train"}])
    r = run(train_cmd(cfg, "--max-steps", "2"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "runs" / "tiny"
    assert not (out / "best.pt").exists()  # nothing validated, nothing "best"
    parent = REPO / "irstd_ros/weights/lrrnet_sirst-v1.json"
    dst = tmp_path / "w" / "tiny.pt"
    scored = tmp_path / "test_paper.json"  # an irstd-eval --bootstrap JSON: the card keeps its intervals
    scored.write_text(json.dumps({"dataset": "sirst-v1", "split": "test", "iou": 0.7, "ci95": {"iou": [0.6, 0.8]},
                                  "ci95_resamples": 2000, "pd_fa_curve": [[0.5, 0.9, 1e-5]]}))
    assert export_weights.main([str(out / "last.pt"), str(dst), "--threshold-from-card", str(parent),
                                "--metrics", f"paper={scored}"]) == 0
    card = json.loads(dst.with_suffix(".json").read_text())
    assert card["test_metrics"]["paper"] == {"dataset": "sirst-v1", "split": "test", "iou": 0.7,
                                             "ci95": {"iou": [0.6, 0.8]}, "ci95_resamples": 2000}
    assert card["selected_by"].startswith("final epoch")
    assert card["threshold"] == json.loads(parent.read_text())["threshold"]
    assert card["threshold_selection"]["inherited_from"] == json.loads(parent.read_text())["training_config"]["name"]
    assert card_threshold("lrrnet", dst) == card["threshold"]
    with pytest.raises(SystemExit):
        export_weights.main([str(out / "last.pt"), str(dst), "--threshold-from-card", str(parent),
                             "--calibration", str(parent)])


def test_a_fine_tunes_card_accounts_for_the_run_it_started_from(tmp_path, tiny_sirst):
    """Two stages (IRSAM's pre-training, then fine-tuning): the fine-tune's card names the first run, its
    selected epoch, data and hours, and adds those hours to its own."""
    from training import export_weights

    first = tiny_config(tmp_path / "a", tiny_sirst, epochs=2, name="stage1")
    assert run(train_cmd(first)).returncode == 0
    stage1 = tmp_path / "a" / "runs" / "stage1"
    second = tiny_config(tmp_path / "b", tiny_sirst, epochs=1, name="stage2", out_dir=str(tmp_path / "a" / "runs"),
                         init_from="{out_dir}/stage1/best.pt")
    r = run(train_cmd(second, "--max-steps", "2"))
    assert r.returncode == 0, r.stderr
    dst = tmp_path / "w" / "stage2.pt"
    assert export_weights.main([str(stage1.parent / "stage2" / "last.pt"), str(dst)]) == 0
    card = json.loads(dst.with_suffix(".json").read_text())
    init = card["init_from"]
    assert init["run"] == "stage1" and init["path"] == str(stage1 / "best.pt")
    assert init["epoch"] == torch.load(stage1 / "best.pt", map_location="cpu", weights_only=False)["epoch"]
    assert init["compute"]["epochs_logged"] == 2 and init["data"][0]["train_split"] == "train"
    assert card["compute"]["train_hours_with_init_run"] == pytest.approx(
        card["compute"]["train_hours"] + init["compute"]["train_hours"], abs=0.011)


@pytest.mark.parametrize("path", sorted((REPO / "training" / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    """Every config the README points at must pass validation and name a registered model,
    so a typo surfaces here rather than hours into someone's training run."""
    from irstd_ros.models import list_models
    from training.config import load_config

    cfg = load_config(path)
    assert cfg["model"] in list_models()
    for d in cfg["datasets"]:
        assert Path(d["root"]).parts[:3] == ("..", "shared", "datasets"), d["root"]
        assert d.get("train_split") in ("train", "trainval"), d


def test_seed_repeats_a_run_under_its_own_name_from_other_random_numbers(tmp_path, tiny_sirst):
    """``--seed N`` (repeats of an ablation arm) writes <config>_seedN beside the seed-0 run, never over it,
    and the seed reaches the initialisation."""
    cfg = tiny_config(tmp_path, tiny_sirst, epochs=1)
    for seed in (1, 2):
        r = run(train_cmd(cfg, "--max-steps", "1", "--seed", str(seed)))
        assert r.returncode == 0, r.stderr
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["tiny_seed1", "tiny_seed2"]
    for seed in (1, 2):
        assert yaml.safe_load((runs / f"tiny_seed{seed}" / "config.yaml").read_text())["seed"] == seed
    one, two = (weights(runs / f"tiny_seed{s}" / "last.pt") for s in (1, 2))
    assert any(not torch.equal(one[k], two[k]) for k in one if one[k].is_floating_point())


def test_calibrate_reads_a_runs_last_pt_like_its_export(tmp_path, tiny_sirst, capsys):
    """A run's last.pt (optimizer and RNG state inside) scores exactly as its exported weights do;
    a missing checkpoint or split is one line on stderr, exit 2."""
    from training import calibrate, export_weights

    cfg = tiny_config(tmp_path, tiny_sirst, epochs=1)
    r = run(train_cmd(cfg, "--max-steps", "2"))
    assert r.returncode == 0, r.stderr
    last = tmp_path / "runs" / "tiny" / "last.pt"
    exported = tmp_path / "w" / "tiny.pt"
    assert export_weights.main([str(last), str(exported), "--fp32"]) == 0
    capsys.readouterr()
    tables = []
    for weights in (last, exported):
        assert calibrate.main([str(weights), "--model", "lrrnet", "--data", str(tiny_sirst), "--split", "val"]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1] and "<-" in tables[0]

    assert calibrate.main([str(tmp_path / "missing.pt"), "--data", str(tiny_sirst)]) == 2
    assert capsys.readouterr().err.strip() == f"calibrate: error: checkpoint not found: {tmp_path / 'missing.pt'}"
    assert calibrate.main([str(exported), "--data", str(tiny_sirst), "--split", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("calibrate: error: split 'nope' not found") and "\n" not in err
    assert calibrate.main([str(exported), "--data", str(tiny_sirst), "--split", "test"]) == 2
    assert capsys.readouterr().err.strip() == \
        "calibrate: error: thresholds are chosen on a validation split, never on test"


def test_ship_calibrates_on_val_then_scores_test_once_into_the_card(tmp_path, sirst_root, capsys):
    """training.ship in order: the run's best epoch, its metrics only up to that epoch, the threshold chosen on
    val, the exported weights scored on test under both protocols with intervals, and those scores in the card."""
    from conftest import make_subset
    from training import ship

    names = (sirst_root / "splits" / "trainval.txt").read_text().split()
    data = make_subset(sirst_root, tmp_path / "data" / "sirst-v1",  # a mechanics check: any frames will do as "test"
                       {"train": names[:8], "val": names[8:12], "test": names[12:15]})
    r = run(train_cmd(tiny_config(tmp_path, data, epochs=2), "--max-steps", "4"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "runs" / "tiny"
    best_epoch = torch.load(out / "best.pt", map_location="cpu", weights_only=False)["epoch"]
    dst, work = tmp_path / "w" / "tiny.pt", tmp_path / "ship"
    assert ship.main([str(out), "--model", "lrrnet", "--dst", str(dst), "--work", str(work), "--cross",
                      "--bootstrap", "50"]) == 0
    card = json.loads(dst.with_suffix(".json").read_text())
    calibration = json.loads((work / "calibration.json").read_text())
    assert calibration["split"] == "val" and card["threshold"] == calibration["chosen"]["threshold"]
    assert card["epochs_trained"] == best_epoch and card["compute"]["epochs_logged"] == best_epoch
    assert set(card["test_metrics"]) == {"paper", "native"}
    for key, m in card["test_metrics"].items():
        scored = json.loads((work / f"test_{key}.json").read_text())
        assert m["split"] == "test" and m["protocol"] == key and m["n_images"] == 3 and m["ci95_resamples"] == 50
        assert scored["weights"] == str(dst) and m["iou"] == scored["iou"]
    printed = capsys.readouterr().out
    assert "| sirst-v1 | paper |" in printed and "| sirst-v1 | native |" in printed

    no_val = tiny_config(tmp_path / "noval", data, epochs=1, datasets=[{"root": str(data), "train_split": "train"}])
    assert run(train_cmd(no_val, "--max-steps", "1")).returncode == 0
    assert ship.main([str(tmp_path / "noval" / "runs" / "tiny"), "--model", "lrrnet", "--checkpoint", "last.pt",
                      "--dst", str(tmp_path / "w2.pt"), "--work", str(tmp_path / "ship2")]) == 2
    assert "trained without a val split" in capsys.readouterr().err

    # the two-stage path (LRRNet's): the train/val stage calibrates and exports without scoring test, the trainval
    # fit keeps that card's threshold and is scored once
    stage1 = tmp_path / "w" / "stage1.pt"
    assert ship.main([str(out), "--model", "lrrnet", "--dst", str(stage1), "--work", str(tmp_path / "ship1"),
                      "--no-test"]) == 0
    stage1_card = json.loads(stage1.with_suffix(".json").read_text())
    assert "test_metrics" not in stage1_card or not stage1_card["test_metrics"]
    assert not list((tmp_path / "ship1").glob("test_*.json"))
    final = tmp_path / "w" / "final.pt"
    assert ship.main([str(tmp_path / "noval" / "runs" / "tiny"), "--model", "lrrnet", "--checkpoint", "last.pt",
                      "--dst", str(final), "--work", str(tmp_path / "ship3"), "--cross", "--bootstrap", "20",
                      "--threshold-from-card", str(stage1.with_suffix(".json"))]) == 0
    final_card = json.loads(final.with_suffix(".json").read_text())
    assert final_card["threshold"] == stage1_card["threshold"]
    # every epoch of a shipped last.pt is in its card's hours (its last epoch's were once left out)
    assert final_card["compute"]["epochs_logged"] == final_card["epochs_trained"]
    assert set(final_card["test_metrics"]) == {"paper", "native"}
    assert ship.main([str(out), "--model", "lrrnet", "--dst", str(tmp_path / "w3.pt"), "--work", str(tmp_path / "s4"),
                      "--threshold-from-card", str(stage1.with_suffix(".json"))]) == 2
    assert "calibrate on it, not from a card" in capsys.readouterr().err


def test_compare_runs_reports_each_runs_best_and_settled_validation(tmp_path, capsys):
    from training import compare_runs
    for name, ious in (("a", [0.1, 0.5, 0.4, 0.45]), ("b", [0.2, 0.3, 0.6, 0.2])):
        run = tmp_path / name
        run.mkdir()
        rows = [{"epoch": e + 1, "epoch_time_s": 1800.0, "loss": 1.0} for e in range(8)]
        for i, iou in enumerate(ious):  # validated every second epoch
            rows[2 * i + 1]["val"] = {"iou": iou, "niou": iou, "pd": 0.9, "fa": 1e-5}
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), "--last", "2",
                              "--json", str(tmp_path / "s.json")]) == 0
    a, b = json.loads((tmp_path / "s.json").read_text())
    assert (a["best_epoch"], a["best"]["iou"], b["best_epoch"], b["best"]["iou"]) == (4, 0.5, 6, 0.6)
    assert a["tail_epochs"] == [6, 8] and a["tail_mean"]["iou"] == pytest.approx(0.425)
    assert b["tail_mean"]["iou"] == pytest.approx(0.4) and b["tail_sd"]["iou"] == pytest.approx(0.2)
    assert a["hours"] == pytest.approx(4.0)
    assert "best ep   4: IoU 0.5000" in capsys.readouterr().out
    assert compare_runs.main([str(tmp_path / "missing")]) == 2

    # repeats of an arm pool into it: "a" is seed 0 of arm "a", "a_seed1" its repeat
    (tmp_path / "a_seed1").mkdir()
    rows = [{"epoch": e + 1, "epoch_time_s": 1.0, **({"val": {"iou": 0.7, "niou": 0.7, "pd": 1.0, "fa": 3e-5}}
                                                     if e % 2 else {})} for e in range(8)]
    (tmp_path / "a_seed1" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert compare_runs.main([str(tmp_path / n) for n in ("a", "a_seed1", "b")] +
                             ["--last", "2", "--arms", "--json", str(tmp_path / "arms.json")]) == 0
    arms = {a["arm"]: a for a in json.loads((tmp_path / "arms.json").read_text())["arms"]}
    assert list(arms) == ["a", "b"] and arms["a"]["runs"] == ["a", "a_seed1"]
    assert arms["a"]["best"]["iou"] == pytest.approx(0.6) and arms["a"]["best_sd"]["iou"] == pytest.approx(0.1 * 2 ** 0.5)
    assert arms["a"]["settled"]["iou"] == pytest.approx((0.425 + 0.7) / 2) and arms["b"]["settled_sd"]["iou"] == 0.0
    assert arms["a"]["settled"]["fa"] == pytest.approx(2e-5)
    # a run whose directory is gone comes back from an earlier --json, pooled the same
    assert compare_runs.main(["--from-json", str(tmp_path / "s.json"), str(tmp_path / "a_seed1"), "--last", "2",
                              "--arms", "--json", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["arms"][0] == arms["a"]
    assert compare_runs.main(["--from-json", str(tmp_path / "s.json"), "--last", "3"]) == 2


def test_distillation_pulls_the_student_toward_the_teacher_and_only_the_student(tmp_path, tiny_sirst):
    """KD's term has no gradient where the student already matches the teacher; the teacher never learns;
    and a run with a teacher trains, logs its ``kd`` part and resumes like any other."""
    from irstd_ros.models import create_model
    from training.losses import Distillation, SegLoss
    torch.manual_seed(0)
    student = create_model("lrrnet", channels=[8, 16, 16, 16])
    teacher = create_model("lrrnet", channels=[8, 16, 16, 16])
    image, target = torch.rand(2, 1, 32, 32), (torch.rand(2, 1, 32, 32) > 0.97).float()
    kd = Distillation(SegLoss(), teacher, weight=1.0, temperature=2.0)
    predicted = kd.predict(student, image, target)
    assert predicted["teacher"].shape == predicted["logits"].shape and not predicted["teacher"].requires_grad
    logits = predicted["logits"].detach().requires_grad_(True)

    def kd_grad(teacher_logits):
        out = {"logits": logits, "teacher": teacher_logits}
        total, parts = kd(out, image, target)
        base, _ = SegLoss()(out, image, target)
        assert float((total - base).detach()) == pytest.approx(float(parts["kd"]), rel=1e-5)
        return torch.autograd.grad(total - base, logits)[0], parts["kd"]

    same, _ = kd_grad(logits.detach().clone())        # the student already says what the teacher says
    assert same.abs().max() < 1e-7
    up, part = kd_grad(logits.detach() + 3.0)         # a teacher that sees more target everywhere
    assert part > 0 and bool((up < 0).all())          # every logit is pushed up, toward it
    assert all(p.grad is None and not p.requires_grad for p in kd.teacher.parameters())

    shipped = REPO / "irstd_ros" / "weights" / "lrrnet_sirst-v1.pt"
    cfg = tiny_config(tmp_path, tiny_sirst, epochs=2, distill={"model": "lrrnet", "weights": str(shipped),
                                                               "weight": 1.0, "temperature": 1.0})
    r = run(train_cmd(cfg))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["kd"] > 0 for row in rows)
    state = weights(tmp_path / "runs" / "tiny" / "last.pt")
    assert not any(k.startswith("teacher") for k in state)
    r = run(train_cmd(tiny_config(tmp_path, tiny_sirst, distill={"model": "lrrnet", "weights": str(tmp_path / "no.pt")})))
    assert r.returncode == 2 and "checkpoint not found" in r.stderr and "Traceback" not in r.stderr
