"""A ready-to-run detector: a loaded model plus the pure pipeline (preprocess -> model -> postprocess).

Everything that turns pixels into detections (eval CLI, ROS node, bag tools) goes
through :class:`Detector`, so they all see identical numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..models import model_cfg
from .backends import BACKENDS, pair_problem, unavailable
from .checkpoints import load_model
from .pipeline import Detection, postprocess, preprocess, restore, run_model, sigmoid
from .precision import resolve_precision

__all__ = ["BACKENDS", "Detector", "DetectorConfig", "config_problem", "device_problem"]


@dataclass
class DetectorConfig:
    model: str = "lrrnet"
    weights: Optional[str] = None
    backend: str = "torch"        # irstd_ros.runtime.backends.BACKENDS
    device: str = "cpu"
    precision: str = "auto"       # auto | fp32 | bf16 | fp16 | int8 (what the backend and device run: BACKEND_PRECISIONS)
    cache_dir: Optional[str] = None  # compiled engines (non-torch backends); None: the user's cache directory
    input_size: int = 0           # 0: native protocol (pad to stride); N: resize to N x N (paper protocol)
    knobs: Dict[str, Any] = field(default_factory=dict)  # the model's registered knobs; "auto"/missing: as shipped


def device_problem(device: str) -> Optional[str]:
    """Why ``device`` cannot run on this machine, else None.

    Checked where the device is set, because torch only fails when the model is
    moved there: ``AssertionError: Torch not compiled with CUDA enabled``.
    """
    kind, _, index = device.partition(":")
    if kind != "cuda":
        return None
    if not torch.cuda.is_available():
        why = "this torch was built without CUDA" if not torch.backends.cuda.is_built() else "no CUDA GPU is visible"
        return f"device={device!r} cannot be used: {why}; use cpu"
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        return f"device={device!r} cannot be used: {count} CUDA GPU(s) visible (cuda:0 to cuda:{count - 1})"
    return None


def config_problem(cfg: DetectorConfig) -> Optional[str]:
    """Why this model, backend, device and precision cannot run together here, else None (imports the
    backend's library to find out whether it is installed)."""
    try:
        backends = model_cfg(cfg.model).backends
    except KeyError as exc:
        return str(exc.args[0])
    problem = (pair_problem(cfg.backend, cfg.device, cfg.precision, cfg.model, backends)
               or unavailable(cfg.backend, cfg.device))
    if problem is None and cfg.precision == "int8":
        problem = _int8_problem(cfg)
    return problem


def _int8_problem(cfg: DetectorConfig) -> Optional[str]:
    """Why these weights have no usable int8 ranges (checked at configure, before any export)."""
    from .backends.int8 import int8_problem
    from .checkpoints import default_weights
    from ..errors import CheckpointError
    try:
        return int8_problem(cfg.weights or default_weights(cfg.model))
    except (CheckpointError, OSError) as exc:
        return str(exc)


class Detector:
    def __init__(self, cfg: Optional[DetectorConfig] = None, report: Optional[Callable[[str, bool], None]] = None):
        """``report(line, is_warning)``: where a compiling backend says which engine it built or loaded."""
        cfg = cfg or DetectorConfig()
        problem = device_problem(cfg.device) or config_problem(cfg)
        if problem:
            raise ValueError(problem)
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device, backend=cfg.backend)
        model, self.meta = load_model(cfg.model, cfg.weights)
        self.model = model.to(self.device)
        if cfg.backend == "torch" and (self.precision == "bf16" or self.device.type == "cpu"):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.compiled = None
        if cfg.backend != "torch":
            from .backends.cache import EngineCache
            from .backends.compiled import CompiledModel
            self.compiled = CompiledModel(cfg.model, self.model, self.meta["path"], cfg.backend, self.precision,
                                          cfg.device, EngineCache(cfg.cache_dir), report=report)
        self.stride = self.model.stride
        if cfg.input_size and cfg.input_size % self.stride:
            raise ValueError(f"input_size {cfg.input_size} must be a multiple of {self.stride}")
        self.knobs = {k.name: k for k in model_cfg(cfg.model).knobs}
        self._shipped = {name: getattr(self.model, name) for name in self.knobs}  # what "auto" means
        self.set_knobs(cfg.knobs)

    def _resolve(self, values: Dict[str, Any]) -> Dict[str, Any]:
        unknown = set(values) - set(self.knobs)
        if unknown:
            raise ValueError(f"{self.cfg.model} has no knob(s) {', '.join(sorted(unknown))}; "
                             f"it has: {', '.join(self.knobs) or 'none'}")
        return {name: self._shipped[name] if value == self.knobs[name].auto else value
                for name, value in values.items()}

    def knob_values(self) -> Dict[str, Any]:
        """The knobs the model runs with now (resolved: never ``auto``)."""
        return {name: getattr(self.model, name) for name in self.knobs}

    def knob_problem(self, values: Dict[str, Any]) -> Optional[str]:
        """Why these knob values cannot run on this model, else None."""
        try:
            resolved = self._resolve(values)
        except ValueError as exc:
            return str(exc)
        return self.model.knob_problem(**resolved) if resolved else None

    def set_knobs(self, values: Dict[str, Any]) -> None:
        """Apply knob values (``auto``: as shipped) from the next frame; ValueError with the reason if refused."""
        resolved = self._resolve(values)
        if resolved:
            self.model.configure(**resolved)

    @property
    def name(self) -> str:
        return f"{self.cfg.model}/{self.cfg.backend}-{self.precision}"

    def probabilities(self, image: np.ndarray, input_size: Optional[int] = None) -> np.ndarray:
        """Per-pixel target probability at the image's native size (float32 HxW).

        ``input_size`` overrides the configured one for this call (0: native).
        """
        size = self.cfg.input_size if input_size is None else input_size
        if size and size % self.stride:
            raise ValueError(f"input_size {size} must be a multiple of {self.stride}")
        x, geom = preprocess(image, self.stride, size or None)
        if self.compiled is not None:
            probs = sigmoid(self.compiled(x).float()[0, 0].numpy())
        else:
            probs = run_model(self.model, x.contiguous(memory_format=torch.channels_last), self.precision)[0]
        return restore(probs, geom)

    def detect(self, image: np.ndarray, threshold: float = 0.5, min_area: int = 1, max_area: int = 0,
               max_detections: int = 0) -> Tuple[np.ndarray, np.ndarray, List[Detection]]:
        """Probabilities, the filtered 0/255 mask, and the detections, all in native pixels."""
        probs = self.probabilities(image)
        mask, dets = postprocess(probs, threshold, min_area, max_area, max_detections)
        return probs, mask, dets

    def warmup(self, height: int = 256, width: int = 256, runs: int = 2, compile_missing: bool = False) -> None:
        """Run a few frames so the first real one is not slow. A compiling backend first loads every frame size
        the cache holds engines for (what ``irstd-build`` prepared), and compiles ``height x width`` only if
        ``compile_missing``: a start-up never compiles for a size no camera may send."""
        if self.compiled is not None:
            for shape in reversed(self.compiled.cached_frame_shapes()):
                self.compiled.parts_for(torch.zeros(shape))
            x, _ = preprocess(np.zeros((height, width), np.float32), self.stride, self.cfg.input_size or None)
            if not compile_missing and tuple(x.shape) not in self.compiled.cached_shapes_in_memory():
                return
        img = np.zeros((height, width), np.float32)
        for _ in range(runs):
            self.probabilities(img)
