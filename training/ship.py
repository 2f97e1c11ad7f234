"""Ship a training run's selected checkpoint: calibrate on val, export with its card, score test once, record it.

    python -m training.ship ~/irstd-runs/irmamba_sirst-v1 --model irmamba
        [--checkpoint best.pt] [--dst irstd_ros/weights/irmamba_sirst-v1.pt] [--work DIR]
        [--cross nudt-sirst irstd-1k] [--bootstrap 2000] [--fa-max 2e-5] [--pd-min 0.93] [--knobs-from JSON]
    python -m training.ship ~/irstd-runs/lrrnet_small_sirst-v1_trainval --model lrrnet_small \
        --checkpoint last.pt --threshold-from-card STAGE1_CARD.json

The order is the discipline MODELS.md asks for, in one command so it cannot be
done out of order: (1) the run's selected checkpoint (``best.pt``: chosen on val
by the training loop) is copied to a work directory with the run's metrics up to
its epoch (the card's CPU hours are those epochs'); (2) ``training.calibrate``
picks the operating threshold on the run's val split; (3) ``training.export_weights``
writes the fp16 weights and card with that threshold; only then (4) ``irstd-eval``
scores the exported weights on the test split, once per protocol (paper and native
on the training dataset, paper on each ``--cross`` dataset), with bootstrap
intervals; (5) the card is re-exported with those test metrics (the weights file
is rewritten with the same tensors). Prints the README rows. Every step's output
stays in the work directory (default ``~/irstd-runs/ship/<run>_e<epoch>``).

A final fit on all of trainval has no val split left: ``--threshold-from-card`` takes
the threshold its train/val stage was calibrated to (that stage shipped with
``--no-test``: calibrated and exported, test untouched) instead of step (2), and the
run's last epoch ships, as decided before it trained.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from irstd_ros.cli import eval as eval_cli
from irstd_ros.errors import IRSTDError

from . import calibrate, checkpoint, export_weights
from .calibrate import run_tool

REPO = Path(__file__).resolve().parents[1]


def _dataset_root(root: str) -> Path:
    """A config's dataset root (relative to the repository, as the configs write it) as a path."""
    path = Path(root).expanduser()
    return path if path.is_absolute() else (REPO / path).resolve()


def prepare(run: Path, name: str, work: Path | None) -> tuple[Path, dict]:
    """Copy the selected checkpoint and the metrics of its epochs into the work directory."""
    src = run / name
    state = checkpoint.load(src)
    if "state_dict" not in state:  # last.pt: its "epoch" counts from 0, metrics.jsonl's from 1 (as best.pt's do)
        state = checkpoint.inference_state_from_training(state)
    epoch = state["epoch"]
    work = work or Path.home() / "irstd-runs" / "ship" / f"{run.name}_e{epoch}"
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, work / name)
    log = run / "metrics.jsonl"
    if log.is_file():
        lines = [line for line in log.read_text().splitlines() if line.strip() and json.loads(line)["epoch"] <= epoch]
        (work / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return work / name, state


def test_evals(model: str, weights: Path, home: Path, cross, bootstrap: int, work: Path) -> dict:
    """{card key: eval JSON path}: the one test scoring of the exported weights."""
    runs = [("paper", home, "paper"), ("native", home, "native")]
    runs += [(f"{name}_paper", home.parent / name, "paper") for name in cross]
    out = {}
    for key, data, protocol in runs:
        path = work / f"test_{key}.json"
        args = ["--model", model, "--weights", str(weights), "--data", str(data), "--split", "test",
                "--protocol", protocol, "--bootstrap", str(bootstrap), "--json", str(path)]
        if eval_cli.main(args) != 0:
            raise IRSTDError(f"irstd-eval {' '.join(args)} failed")
        out[key] = path
    return out


def readme_rows(card: dict) -> str:
    rows = []
    for key, m in card["test_metrics"].items():
        proto = "paper" if key.endswith("paper") else "native"
        threshold = m.get("threshold", card["threshold"])
        rows.append(f"| {m['dataset']} | {proto} | {threshold:.2f} | {m['iou']:.4f} | {m['niou']:.4f} | "
                    f"{m['pd']:.4f} | {m['fa']:.2e} | {m.get('auc', float('nan')):.4f} |")
    return "\n".join(rows)


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="the training run's directory (best.pt, metrics.jsonl)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--checkpoint", default="best.pt", help="which of the run's checkpoints ships")
    ap.add_argument("--dst", help="default: irstd_ros/weights/<run name>.pt")
    ap.add_argument("--work", type=Path, help="default: ~/irstd-runs/ship/<run>_e<epoch>")
    ap.add_argument("--cross", nargs="*", default=["nudt-sirst", "irstd-1k"],
                    help="datasets beside the training one scored cross-dataset (paper protocol)")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--fa-max", type=float, default=2e-5)
    ap.add_argument("--pd-min", type=float, default=0.93)
    ap.add_argument("--knobs-from", help="training.choose_sampling JSON (IRSTD-Diff's serving defaults)")
    ap.add_argument("--selected-by", help="for the card: how --checkpoint was chosen, when not best.pt's own "
                    "validation choice")
    ap.add_argument("--threshold-from-card", help="for a run on all of trainval: the card of its train/val stage, "
                    "whose val-chosen threshold it keeps (instead of calibrating)")
    ap.add_argument("--no-test", action="store_true", help="calibrate and export only (a train/val stage that a "
                    "trainval fit will follow): the test split stays unscored")
    args = ap.parse_args(argv)
    run = Path(args.run).expanduser()
    if not (run / args.checkpoint).is_file():
        raise IRSTDError(f"no {args.checkpoint} in {run}")
    ckpt, state = prepare(run, args.checkpoint, args.work)
    work = ckpt.parent
    datasets = state["config"]["datasets"]
    data = next((d for d in datasets if d.get("val_split")), None)
    if data is None and not args.threshold_from_card:
        raise IRSTDError(f"{run.name} trained without a val split: nothing to calibrate on (give "
                         "--threshold-from-card, the card of its train/val stage)")
    if data is not None and args.threshold_from_card:
        raise IRSTDError(f"{run.name} has a val split ({data['val_split']}): calibrate on it, not from a card")
    home = _dataset_root((data or datasets[0])["root"])
    dst = Path(args.dst) if args.dst else REPO / "irstd_ros" / "weights" / f"{run.name}.pt"
    print(f"shipping {run.name} epoch {state['epoch']} as {dst}; work in {work}", flush=True)

    if args.threshold_from_card:
        export_args = [str(ckpt), str(dst), "--threshold-from-card", args.threshold_from_card]
    else:
        calibration = work / "calibration.json"
        # the threshold is chosen for the output that ships: with the val-chosen serving knobs, not the training
        # config's (IRSTD-Diff's CE mode and diffusion sample differ in scale)
        knobs = json.loads(Path(args.knobs_from).read_text())["default"] if args.knobs_from else {}
        if calibrate.main([str(ckpt), "--model", args.model, "--data", str(home), "--split", data["val_split"],
                           "--fa-max", str(args.fa_max), "--pd-min", str(args.pd_min), "--json", str(calibration)]
                          + [a for k, v in knobs.items() for a in ("--knob", f"{k}={v}")]) != 0:
            raise IRSTDError("calibration failed")
        export_args = [str(ckpt), str(dst), "--calibration", str(calibration)]
    if args.knobs_from:
        export_args += ["--knobs-from", args.knobs_from]
    if args.selected_by:
        export_args += ["--selected-by", args.selected_by]
    export_weights.main(export_args)
    if args.no_test:
        return 0
    evals = test_evals(args.model, dst, home, args.cross, args.bootstrap, work)
    export_weights.main(export_args + [a for key, path in evals.items() for a in ("--metrics", f"{key}={path}")])
    card = json.loads(dst.with_suffix(".json").read_text())
    print("\n| data (test split) | protocol | threshold | IoU | nIoU | Pd | Fa | AUC |\n| --- | --- | --- | --- | --- "
          "| --- | --- | --- |\n" + readme_rows(card))
    return 0


def main(argv=None) -> int:
    return run_tool("ship", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
