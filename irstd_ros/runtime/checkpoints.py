"""Inference checkpoints: the shipped weights, and loading any checkpoint with a one-line error.

A checkpoint is a ``torch.save`` dict: ``{"model", "model_args", "state_dict", ...}``
(what ``training/export_weights.py`` writes). Shipped checkpoints live in
``irstd_ros/weights/<model>_<dataset>.pt`` with a ``.json`` sidecar that records
the config, the data, the epochs and the measured metrics.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ..errors import CheckpointError
from ..models import create_model, model_cfg

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def default_weights(model: str) -> Path:
    """The shipped checkpoint registered for ``model``; CheckpointError if the project ships none (yet)."""
    try:
        name = model_cfg(model).weights
    except KeyError as exc:
        raise CheckpointError(str(exc.args[0])) from None
    if name is None or not (WEIGHTS_DIR / name).is_file():
        raise CheckpointError(f"no shipped weights for model {model!r} yet; pass a checkpoint path")
    return WEIGHTS_DIR / name


def ships_weights(model: str) -> bool:
    """Whether the project ships a checkpoint for ``model`` (:func:`default_weights` would find one)."""
    try:
        default_weights(model)
    except CheckpointError:
        return False
    return True


def read_checkpoint(path: str | Path) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle garbage, wrong format: all one story for the user
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"checkpoint {path} has no 'model'/'state_dict' entries; export it with training/export_weights.py")
    return ckpt


def read_checkpoint_for(model: str, weights: Optional[str | Path] = None) -> Tuple[Path, Dict[str, Any]]:
    """(path, checkpoint) of ``weights`` (the shipped default when None), checked to be ``model``'s."""
    path = Path(weights) if weights else default_weights(model)
    ckpt = read_checkpoint(path)
    if ckpt["model"] != model:
        raise CheckpointError(f"checkpoint {path} is for model {ckpt['model']!r}, not {model!r}")
    return path, ckpt


def load_model(model: str, weights: Optional[str | Path] = None) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Build ``model`` and load ``weights`` (the shipped default when None), in eval mode, fp32.

    Returns the module and the checkpoint's metadata (everything but the tensors).
    """
    path, ckpt = read_checkpoint_for(model, weights)
    net = create_model(model, **ckpt.get("model_args", {}))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit {model}: {first}") from None
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    meta["path"] = str(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        meta["card"] = json.loads(sidecar.read_text())
    return net.eval(), meta


DEFAULT_THRESHOLD = 0.5


def operating_threshold(meta: Dict[str, Any]) -> float:
    """The threshold a checkpoint's card says it was calibrated for (on validation data), else 0.5."""
    return float(meta.get("card", {}).get("threshold", DEFAULT_THRESHOLD))


def card_threshold(model: str, weights: Optional[str | Path] = None) -> float:
    """:func:`operating_threshold` from the checkpoint's JSON card alone, without loading tensors."""
    try:
        path = Path(weights) if weights else default_weights(model)
        card = json.loads(path.with_suffix(".json").read_text())
    except (CheckpointError, OSError, ValueError):
        return DEFAULT_THRESHOLD
    return float(card.get("threshold", DEFAULT_THRESHOLD))
