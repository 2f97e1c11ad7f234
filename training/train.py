"""Train an irstd_ros model from a YAML config, resumably, on one or several CPU/GPU processes.

    python -m training.train --config training/configs/lrrnet_sirst-v1.yaml
    torchrun --nproc-per-node 2 -m training.train --config ...      # DDP (gloo on CPU)

Every epoch writes ``runs/<name>/last.pt`` atomically (model, optimizer,
scheduler, RNG, epoch, best score); rerunning the same command resumes from it
and reproduces the uninterrupted run exactly. The best validation checkpoint is
``best.pt``; ``metrics.jsonl`` holds one line per epoch (see ``plot_metrics``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from irstd_ros.machine import machine_description
from irstd_ros.eval.datasets import IRSTDDataset, paper_size
from irstd_ros.errors import IRSTDError
from irstd_ros.eval.metrics import MetricAccumulator
from irstd_ros.models import create_model, model_cfg
from irstd_ros.runtime.pipeline import preprocess, restore, run_model
from irstd_ros.runtime.precision import autocast, resolve_precision

from . import checkpoint
from .config import ConfigError, init_path, load_config
from .data import TrainData
from .losses import build_loss


MACHINE = machine_description()  # logged with every epoch: a run resumed across sessions may change machine


def lr_factor(step: int, total: int, warmup: int, sched: dict, base_lr: float) -> float:
    """Linear warm-up, then cosine or poly decay to ``min_lr``; a multiplier of the base lr."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = min((step - warmup) / max(total - warmup, 1), 1.0)
    floor = sched.get("min_lr", 0.0) / base_lr
    if sched["name"] == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return floor + (1 - floor) * (1 - t) ** sched.get("power", 0.9)


def build_optimizer(cfg, params):
    o = cfg["optimizer"]
    cls = torch.optim.AdamW if o["name"] == "adamw" else torch.optim.Adam
    return cls(params, lr=float(o["lr"]), betas=tuple(o["betas"]), weight_decay=float(o["weight_decay"]))


def validate(model, cfg, val_sets, precision) -> dict:
    """Paper-protocol validation on the held-out split (never the test split)."""
    model.eval()
    acc = MetricAccumulator(threshold=cfg["val_threshold"], curve_thresholds=())
    for ds in val_sets:
        for s in ds:
            x, geom = preprocess(s.image, model.stride)
            probs = run_model(model, x, precision)[0]
            acc.update(restore(probs, geom), s.mask)
    model.train()
    out = acc.summary()
    out.pop("threshold")
    return out


class WeightEMA:
    """Exponential moving average of a model's floating-point state (weights and norm buffers).

    Small IRSTD sets give a noisy validation curve from epoch to epoch (SIRST-v1
    val IoU swung 0.58-0.66 late in a run); the average of the last few
    hundred steps is steadier and is what gets validated and shipped.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(self.decay).add_(v.detach().float(), alpha=1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


def initialise(model: torch.nn.Module, name: str, path: str, log=print) -> None:
    """Start from ``path``: our own checkpoint of this model (all keys must match), or a foreign one the
    model's registered ``init_adapter`` recognises (it maps what matches and reports the rest, a line each)."""
    state = checkpoint.weights_from(path)
    adapter = model_cfg(name).init_adapter
    if adapter is not None and adapter[0](state):
        report = adapter[1](model, state)
        for line in report.lines():
            if log:
                log(f"init_from {path}: {line}")
        return
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise checkpoint.CheckpointLoadError(f"init_from {path} does not fit {name}: {first}") from None


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out-dir", help="override the config's out_dir")
    ap.add_argument("--epochs", type=int, help="override the number of epochs")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in total (tests)")
    ap.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--seed", type=int,
                    help="override the config's seed; the run is then named <config>_seed<N> (repeats of a run)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--save-replicas", action="store_true",
                    help="at the end, every DDP rank saves its weights as replica<rank>.pt (to check they agree)")
    args = ap.parse_args(argv)

    try:
        overrides = {}
        if args.out_dir:
            overrides["out_dir"] = args.out_dir
        if args.epochs:
            overrides["epochs"] = args.epochs
        if args.no_compile:
            overrides["compile"] = False
        if args.seed is not None:
            overrides["seed"] = args.seed
            overrides["name"] = f"{Path(args.config).stem}_seed{args.seed}"
        cfg = load_config(args.config, overrides)
        return train(cfg, args)
    except (ConfigError, IRSTDError, checkpoint.CheckpointLoadError) as exc:
        print(f"irstd-train: error: {exc}", file=sys.stderr)
        return 2


def process_group_backend(device: torch.device) -> str:
    """NCCL moves only CUDA tensors: the backend follows the device the model trains on, not the machine."""
    return "nccl" if device.type == "cuda" else "gloo"


def train(cfg: dict, args) -> int:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device("cpu")
    if world > 1:
        dist.init_process_group(process_group_backend(device))
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    precision = resolve_precision(cfg["precision"], device)
    out = Path(cfg["out_dir"]) / cfg["name"]
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"

    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    random.seed(cfg["seed"])
    model = create_model(cfg["model"], **cfg["model_args"]).to(device)
    if cfg["init_from"]:
        initialise(model, cfg["model"], str(init_path(cfg)), log=print if rank == 0 else None)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model.parameters())
    data = TrainData(cfg["datasets"], "train_split", cfg["crop_size"], cfg["scale_range"], cfg["target_crop_prob"])
    val_sets = [IRSTDDataset(d["root"], d["val_split"], protocol="paper", size=d.get("size") or paper_size(d["root"]))
                for d in cfg["datasets"] if d.get("val_split")]
    steps_per_epoch = data.steps_per_epoch(cfg["batch_size"], world)
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(data)} training samples make no batch of {cfg['batch_size']} x {world} ranks")
    total = steps_per_epoch * cfg["epochs"]
    warmup = int(cfg["schedule"].get("warmup_epochs", 0) * steps_per_epoch)
    base_lr = float(cfg["optimizer"]["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, cfg["schedule"], base_lr))

    ema = WeightEMA(model, float(cfg["ema_decay"])) if cfg["ema_decay"] and rank == 0 else None
    eval_model = create_model(cfg["model"], **cfg["model_args"]) if ema else model
    start_epoch, best, step = 0, -1.0, 0
    if last_path.exists() and not args.no_resume:
        state = checkpoint.load_training(last_path)
        if state.get("config", {}).get("model") != cfg["model"]:
            raise ConfigError(f"{last_path} was trained for model {state.get('config', {}).get('model')!r}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        if ema is not None:
            if "ema" not in state:
                raise ConfigError(f"{last_path} has no EMA weights but the config asks for ema_decay")
            ema.shadow = state["ema"]
        start_epoch, best, step = state["epoch"] + 1, state["best"], state["step"]
        if rank == 0:
            print(f"resuming {cfg['name']} from epoch {start_epoch} (best {cfg['select_metric']} {best:.4f})")
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        log_path.unlink(missing_ok=True)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    if cfg["compile"]:
        net = torch.compile(net, dynamic=False)
    loss_fn = build_loss(cfg["model"], cfg["loss"], cfg["distill"])  # a teacher that will not load: CheckpointError

    for epoch in range(start_epoch, cfg["epochs"]):
        model.train()
        t0 = time.time()
        sums = {"loss": 0.0}
        bar = tqdm(data.epoch_batches(epoch, cfg["seed"], cfg["batch_size"], rank, world), total=steps_per_epoch,
                   desc=f"epoch {epoch + 1}/{cfg['epochs']}", leave=False,
                   disable=rank != 0 or args.no_progress or not sys.stderr.isatty())
        n = 0
        for img, mask in bar:
            if cfg["channels_last"]:
                img = img.contiguous(memory_format=torch.channels_last)
            with autocast(precision, device):
                outputs = loss_fn.predict(net, img, mask)
            loss, parts = loss_fn(outputs, img.float(), mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            n += 1
            if ema is not None:
                ema.update(model)
            sums["loss"] += float(loss.detach())
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            bar.set_postfix(loss=f"{sums['loss'] / n:.4f}")
            if args.max_steps and step >= args.max_steps:
                break
        record = {"epoch": epoch + 1, "step": step, "lr": scheduler.get_last_lr()[0],
                  "epoch_time_s": round(time.time() - t0, 2), "machine": MACHINE, "precision": precision, **{k: v / max(n, 1) for k, v in sums.items()}}
        finished_early = bool(args.max_steps and step >= args.max_steps)
        if rank == 0:
            if val_sets and ((epoch + 1) % cfg["val_every"] == 0 or epoch + 1 == cfg["epochs"]):
                if ema is not None:
                    ema.copy_to(eval_model)
                record["val"] = validate(eval_model, cfg, val_sets, precision)
                score = record["val"][cfg["select_metric"]]
                if score > best:
                    best = score
                    checkpoint.save_atomic(checkpoint.inference_state(eval_model, cfg, epoch + 1, record), best_path)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": rng_state(), "epoch": epoch,
                     "step": step, "best": best, "config": cfg}
            if ema is not None:
                state["ema"] = ema.shadow
            checkpoint.save_atomic(state, last_path)
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            val = record.get("val")
            msg = f"epoch {epoch + 1}/{cfg['epochs']} loss {record['loss']:.4f} ({record['epoch_time_s']:.0f}s)"
            if val:
                msg += f" | val iou {val['iou']:.4f} niou {val['niou']:.4f} pd {val['pd']:.4f} fa {val['fa']:.2e}"
            print(msg, flush=True)
        if world > 1:
            dist.barrier()
        if finished_early:
            break
    if args.save_replicas:
        torch.save(model.state_dict(), out / f"replica{rank}.pt")
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
