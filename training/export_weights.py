"""Export a training checkpoint to a small shippable one (fp16 tensors) plus a JSON model card.

    python -m training.export_weights runs/lrrnet_sirst-v1/best.pt irstd_ros/weights/lrrnet_sirst-v1.pt \
        --metrics paper=eval_paper.json --metrics native=eval_native.json

The card records the model, its config, the training data and splits, the
epochs, the validation record that selected it, and any test metrics given.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from . import checkpoint
from .config import init_path


def training_time(run_dir: Path) -> dict:
    """Wall-clock training time of a run, from its metrics.jsonl (the run's epochs, not its predecessors')."""
    log = run_dir / "metrics.jsonl"
    if not log.is_file():
        return {}
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    seconds = sum(r.get("epoch_time_s", 0.0) for r in records)
    machines = sorted({r["machine"] for r in records if "machine" in r})
    return {"train_hours": round(seconds / 3600, 2), "epochs_logged": len(records),
            "machines": machines or ["not logged by this run"],
            "note": "wall-clock hours of the training epochs, validation excluded"}


def pretraining(cfg: dict) -> dict | None:
    """What a fine-tune started from (``init_from``), for the card: when that is a run's checkpoint, the run's
    name, data, selected epoch, validation and compute, so the card accounts for the whole training (IRSAM's
    pre-training stage, say); otherwise just the path (a MobileSAM checkpoint, an exported one)."""
    path = init_path(cfg)
    if path is None:
        return None
    out: dict = {"path": str(path)}
    if not path.is_file():
        return {**out, "note": "not found when these weights were exported"}
    state = checkpoint.load(path)
    run_cfg = state.get("config") if isinstance(state, dict) else None
    if not isinstance(run_cfg, dict) or "epoch" not in state:
        return out  # a foreign or bare checkpoint: no run to describe
    return {**out, "run": run_cfg.get("name"), "model_args": run_cfg.get("model_args"), "epoch": state["epoch"],
            "epochs_planned": run_cfg.get("epochs"),
            "data": [{k: d[k] for k in ("root", "train_split", "val_split", "repeat") if k in d}
                     for d in run_cfg.get("datasets", [])],
            "validation": (state.get("record") or {}).get("val"), "compute": training_time(path.parent)}


def export(src: Path, dst: Path, metrics: dict, dtype: torch.dtype = torch.float16,
           calibration: dict | None = None, threshold_card: dict | None = None, sampling: dict | None = None,
           selected_by: str | None = None) -> dict:
    state = checkpoint.load(src)
    if "state_dict" not in state:  # a last.pt training checkpoint
        state = checkpoint.inference_state_from_training(state)
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    cfg = state["config"]
    model_args = dict(state.get("model_args", {}))
    if sampling:  # the serving knobs chosen on val (training.choose_sampling) become the weights' own defaults
        model_args.update(sampling["default"])
    out = {"model": state["model"], "model_args": model_args, "state_dict": sd, "epoch": state["epoch"]}
    dst.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save_atomic(out, dst)
    card = {
        "model": state["model"],
        "model_args": model_args,
        "dtype": str(dtype).replace("torch.", ""),
        "epochs_trained": state["epoch"],
        "init_from": pretraining(cfg),
        "epochs_planned": cfg["epochs"],
        "selected_by": selected_by or (f"best validation {cfg['select_metric']}"
                                       if any(d.get("val_split") for d in cfg["datasets"])
                                       else "final epoch of a fixed schedule (no validation split)"),
        "validation": state.get("record", {}).get("val"),
        "data": [{k: d[k] for k in ("root", "train_split", "val_split") if k in d} for d in cfg["datasets"]],
        "training_config": cfg,
        "compute": training_time(src.parent),
        "test_metrics": metrics,
    }
    before = (card["init_from"] or {}).get("compute", {}).get("train_hours")
    if before is not None and "train_hours" in card["compute"]:
        card["compute"]["train_hours_with_init_run"] = round(card["compute"]["train_hours"] + before, 2)
    if calibration:
        card["threshold"] = calibration["chosen"]["threshold"]
        card["threshold_selection"] = {k: calibration[k] for k in ("split", "fa_max", "pd_min", "knobs")
                                       if k in calibration}
        card["threshold_selection"]["val_metrics"] = calibration["chosen"]
    elif threshold_card:
        # A final fit on all of trainval has no held-out split left to calibrate on: it keeps
        # the threshold its predecessor chose on val, and the card says so.
        if "threshold" not in threshold_card:
            raise ValueError("the card given for the threshold records no threshold")
        card["threshold"] = threshold_card["threshold"]
        card["threshold_selection"] = {**threshold_card.get("threshold_selection", {}),
                                       "inherited_from": threshold_card.get("training_config", {}).get("name")}
    if sampling:
        card["sampling_selection"] = {k: sampling[k] for k in ("split", "protocol", "threshold", "tolerance", "rows",
                                                               "default", "machine") if k in sampling}
    dst.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--metrics", action="append", default=[], help="NAME=irstd-eval JSON to record in the card")
    ap.add_argument("--fp32", action="store_true", help="keep fp32 tensors")
    ap.add_argument("--calibration", help="training.calibrate JSON: records the val-selected operating threshold")
    ap.add_argument("--threshold-from-card", help="model card (JSON) whose val-chosen threshold to keep, for a model "
                    "trained on all of trainval (no val split left); exclusive with --calibration")
    ap.add_argument("--knobs-from", help="training.choose_sampling JSON: its val-chosen default knobs ship with the "
                    "weights (IRSTD-Diff's mode and steps)")
    ap.add_argument("--selected-by", help="how this checkpoint was chosen, when not the training loop's own "
                    "validation choice (best.pt) or a fixed schedule's last epoch")
    args = ap.parse_args(argv)
    metrics = {}
    for item in args.metrics:
        name, _, path = item.partition("=")
        res = json.loads(Path(path).read_text())
        metrics[name] = {k: res[k] for k in ("dataset", "split", "protocol", "threshold", "iou", "niou", "pd", "fa",
                                             "auc", "n_images", "n_targets", "ci95", "ci95_resamples") if k in res}
    if args.calibration and args.threshold_from_card:
        ap.error("give --calibration or --threshold-from-card, not both")
    calibration = json.loads(Path(args.calibration).read_text()) if args.calibration else None
    threshold_card = json.loads(Path(args.threshold_from_card).read_text()) if args.threshold_from_card else None
    sampling = json.loads(Path(args.knobs_from).read_text()) if args.knobs_from else None
    export(Path(args.src), Path(args.dst), metrics, torch.float32 if args.fp32 else torch.float16, calibration,
           threshold_card, sampling, args.selected_by)
    print(f"wrote {args.dst} and {Path(args.dst).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
