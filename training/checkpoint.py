"""Atomic checkpoints: written to a temp file in the same directory, fsynced, then renamed.

A kill during the write leaves the previous checkpoint intact, so training
always resumes from the last complete epoch.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict

import torch


def save_atomic(obj: Dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | Path) -> Dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


class CheckpointLoadError(RuntimeError):
    pass


def load_training(path: str | Path) -> Dict[str, Any]:
    """Load a training checkpoint, turning a corrupt file into a one-line error."""
    try:
        state = load(path)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise CheckpointLoadError(f"cannot resume from {path}: {exc.__class__.__name__}: {exc}") from None
    missing = {"model", "optimizer", "scheduler", "rng", "epoch", "step", "best"} - set(state)
    if missing:
        raise CheckpointLoadError(f"{path} is not a training checkpoint (missing {', '.join(sorted(missing))})")
    return state


def inference_state(model: torch.nn.Module, cfg: Dict[str, Any], epoch: int, record: Dict[str, Any]) -> Dict[str, Any]:
    """What inference needs: weights, model name and args, and where they came from."""
    return {"model": cfg["model"], "model_args": cfg["model_args"], "state_dict": model.state_dict(),
            "epoch": epoch, "record": record, "config": cfg}


def inference_state_from_training(state: Dict[str, Any]) -> Dict[str, Any]:
    """The weights a last.pt would ship: the EMA when the run kept one (that is what it validated)."""
    cfg = state["config"]
    return {"model": cfg["model"], "model_args": cfg["model_args"], "state_dict": state.get("ema") or state["model"],
            "epoch": state["epoch"] + 1, "record": {}, "config": cfg}


def weights_from(path: str | Path) -> Dict[str, Any]:
    """fp32 model weights from a training (last/best) or exported checkpoint or a bare state dict, for fine-tuning."""
    try:
        state = load(path)
    except Exception as exc:
        raise CheckpointLoadError(f"cannot initialise from {path}: {exc.__class__.__name__}: {exc}") from None
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        sd = state  # a bare state dict (e.g. a MobileSAM checkpoint)
    else:
        sd = state.get("state_dict") or state.get("model") if isinstance(state, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointLoadError(f"{path} holds no model weights")
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
