"""Training configuration: a YAML file over these defaults, validated before any work starts."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict

import yaml

from irstd_ros.models import model_cfg

DEFAULTS: Dict[str, Any] = {
    "name": None,                 # run name; defaults to the config file's stem
    "model": "lrrnet",
    "model_args": {},
    "init_from": None,            # weights to start from (a best.pt / last.pt / exported checkpoint, or a foreign one
                                  # the model's init_adapter reads, e.g. MobileSAM for irsam); "{out_dir}" expands
    "datasets": [],               # [{root, train_split, val_split, weight}]
    "base_size": 256,             # paper protocol: every image is resized to this first
    "crop_size": 256,             # random crop after a random rescale
    "scale_range": [0.8, 1.2],
    "target_crop_prob": 0.5,      # fraction of crops centred on a random target pixel
    "batch_size": 8,
    "epochs": 100,
    "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "betas": [0.9, 0.999]},
    "schedule": {"name": "cosine", "warmup_epochs": 2, "min_lr": 1e-5, "power": 0.9},
    "loss": {},                   # arguments of the model's registered loss (training/losses.py)
    "distill": {},                # {model, weights, weight, temperature}: also learn a teacher's probabilities
                                  # (training.losses.Distillation); empty: no teacher
    "ema_decay": 0.0,             # >0: validate and ship an exponential moving average of the weights
    "val_every": 1,
    "val_threshold": 0.5,
    "select_metric": "iou",
    "precision": "auto",          # auto | fp32 | bf16
    "compile": True,
    "channels_last": True,
    "seed": 0,
    "threads": 0,                 # 0: leave torch's default
    "out_dir": "runs",
}

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "poly")


class ConfigError(ValueError):
    pass


def init_path(cfg: Dict[str, Any]) -> Path | None:
    """The checkpoint ``init_from`` names, with ``{out_dir}`` and ``~`` expanded (training and the card read it)."""
    init = cfg.get("init_from")
    return Path(os.path.expanduser(str(init).format(out_dir=cfg.get("out_dir", "")))) if init else None


def _merge(base: Dict[str, Any], override: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if k not in base:
            raise ConfigError(f"unknown config key {k!r}")
        out[k] = _merge(base[k], v) if isinstance(base[k], dict) and isinstance(v, dict) and base[k] else v
    return out


def load_config(path: str | Path, overrides: Dict[str, Any] | None = None) -> Dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    cfg = _merge(DEFAULTS, raw)
    if overrides:
        cfg = _merge(cfg, overrides)
    cfg["name"] = cfg["name"] or path.stem
    validate(cfg)
    return cfg


def validate(cfg: Dict[str, Any]) -> None:
    if not cfg["datasets"]:
        raise ConfigError("config lists no datasets")
    for d in cfg["datasets"]:
        if "root" not in d:
            raise ConfigError(f"dataset entry {d} has no 'root'")
    if cfg["optimizer"]["name"] not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {OPTIMIZERS}")
    if cfg["schedule"]["name"] not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {SCHEDULES}")
    for key in ("batch_size", "epochs", "crop_size", "base_size", "val_every"):
        if int(cfg[key]) <= 0:
            raise ConfigError(f"{key} must be positive")
    if not 0.0 <= float(cfg["ema_decay"]) < 1.0:
        raise ConfigError("ema_decay must be in [0, 1)")
    try:
        stride = model_cfg(cfg["model"]).stride
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    from .losses import build_loss  # the loss arguments must fit the model's registered loss
    try:
        build_loss(cfg["model"], cfg["loss"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    distill = cfg["distill"]
    if distill:
        unknown = set(distill) - {"model", "weights", "weight", "temperature"}
        if unknown or "model" not in distill:
            raise ConfigError(f"distill takes model, weights, weight, temperature (got {sorted(distill)})")
        try:
            model_cfg(distill["model"])
        except KeyError as exc:
            raise ConfigError(f"distill: {exc.args[0]}") from None
        if any(float(distill[k]) <= 0 for k in ("weight", "temperature") if k in distill):
            raise ConfigError("distill weight and temperature must be positive")
    if cfg["crop_size"] % stride:
        raise ConfigError(f"crop_size must be a multiple of {stride} (the {cfg['model']} stride)")
