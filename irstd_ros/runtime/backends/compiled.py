"""A model run through a compiling backend: export parts compiled per input shape, kept in an LRU.

Native frames come in a few sizes per vehicle (one per camera), so each padded
size gets its own static-shape engine: static shapes are what OpenVINO and
TensorRT optimise best, and the selective scan's decomposition needs a static
sequence length. The first frame of a new size pays the compile (or a cache
load); :attr:`CompiledModel.lookups` records which it was and how long it took.
int8 quantises each size's export with the ranges shipped beside the weights
(:mod:`.int8`); their digest is part of the cache key, as the weights' is.
"""
from __future__ import annotations

import logging
from collections import OrderedDict, deque
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ...models import model_cfg
from . import engine
from .cache import EngineCache, EntryKey, Lookup, device_signature, weights_digest

log = logging.getLogger("irstd_ros.runtime.backends")
DEFAULT_MAX_SHAPES = 4


class CompiledPart:
    """One compiled export part, called with torch tensors like the module it replaces."""

    def __init__(self, run: Callable[[List[np.ndarray]], List[np.ndarray]]):
        self._run = run

    def __call__(self, *inputs: torch.Tensor):
        outs = [torch.from_numpy(np.asarray(o)) for o in self._run([i.detach().cpu().numpy() for i in inputs])]
        return outs[0] if len(outs) == 1 else tuple(outs)


class CompiledModel:
    """``model`` under ``backend`` at ``precision``; call it with a ``(1, 1, H, W)`` frame for mask logits."""

    def __init__(self, name: str, model: torch.nn.Module, weights_path: str, backend: str, precision: str,
                 device: str = "cpu", cache: Optional[EngineCache] = None, max_shapes: int = DEFAULT_MAX_SHAPES,
                 report: Optional[Callable[[str, bool], None]] = None):
        """``report(line, is_warning)`` receives one line per engine built, loaded or rebuilt (default: the
        ``irstd_ros.runtime.backends`` logger)."""
        self.report = report or (lambda line, warn: log.log(logging.WARNING if warn else logging.INFO, line))
        self.name, self.model, self.backend, self.precision, self.device = name, model, backend, precision, device
        self.engine = engine(backend)
        self.cache = cache or EngineCache()
        self.cfg = model_cfg(name)
        self.max_shapes = max_shapes
        self._weights = weights_digest(weights_path)
        self._int8 = None
        if precision == "int8":
            from .int8 import ranges_digest, read_ranges
            self._int8 = read_ranges(weights_path)["parts"]
            self._weights += "+int8:" + ranges_digest(self._int8)
        self._version = self.engine.version()
        self._device_sig = device_signature(device)
        self._shapes: "OrderedDict[Tuple[int, ...], Dict[str, CompiledPart]]" = OrderedDict()
        self.lookups: "deque[Tuple[Tuple[int, ...], str, Lookup]]" = deque(maxlen=64)  # (frame shape, part, what the cache did)

    def last_lookup(self) -> str:
        """One line on the newest engine lookup, for diagnostics; empty before the first frame."""
        if not self.lookups:
            return ""
        shape, part, lookup = self.lookups[-1]
        return f"{part} {shape[-1]}x{shape[-2]} {lookup.status} in {lookup.seconds:.2f} s"

    def cached_frame_shapes(self) -> List[Tuple[int, ...]]:
        """Frame shapes (padded, ``(1, 1, H, W)``) whose engines this model, weights, engine, precision and
        device have in the cache, newest first, at most :attr:`max_shapes`."""
        match = {k: v for k, v in self.key("", ()).as_dict().items() if k not in ("part", "input_shapes")}
        shapes: List[Tuple[int, ...]] = []
        for meta in self.cache.notes(**match):
            shape = tuple(meta.get("frame_shape") or ())
            if len(shape) == 4 and shape not in shapes:
                shapes.append(shape)
        return shapes[: self.max_shapes]

    def key(self, part: str, inputs) -> EntryKey:
        return EntryKey(self.name, self._weights, part, self.backend, self._version, self.precision,
                        tuple(tuple(i.shape) for i in inputs), self._device_sig)

    def cached_shapes_in_memory(self) -> List[Tuple[int, ...]]:
        return list(self._shapes)

    def parts_for(self, x: torch.Tensor) -> Dict[str, CompiledPart]:
        """The compiled parts for ``x``'s shape: from the LRU, else :meth:`compile` them now."""
        shape = tuple(x.shape)
        if shape not in self._shapes:
            self.compile(x)
        self._shapes.move_to_end(shape)
        return self._shapes[shape]

    def compile(self, x: torch.Tensor) -> List[Tuple[str, Lookup]]:
        """Load (from the cache) or build every part for ``x``'s shape and keep them in the LRU; what was done."""
        shape = tuple(x.shape)
        example = x.float()
        parts = self.cfg.export_parts(self.model, example) if self.cfg.export_parts else {"model": (self.model, (example,))}
        compiled, done = {}, []
        for part, (module, inputs) in parts.items():
            run, lookup = self.cache.get(
                self.key(part, inputs),
                build=lambda d, m=module, i=inputs, p=part: self._build(m, i, d, p),
                load=lambda d: self.engine.load(d, self.precision, self.device), note={"frame_shape": list(shape)})
            verb = {"hit": "loaded from the engine cache", "built": "compiled",
                    "rebuilt": f"rebuilt (the cached entry was unusable: {lookup.reason})"}[lookup.status]
            self.report(f"{self.name}/{part} for {self.backend}-{self.precision} at "
                        f"{shape[-1]}x{shape[-2]}: {verb} in {lookup.seconds:.2f} s ({lookup.path})",
                        lookup.status == "rebuilt")
            self.lookups.append((shape, part, lookup))
            compiled[part] = CompiledPart(run)
            done.append((part, lookup))
        self._shapes[shape] = compiled
        while len(self._shapes) > self.max_shapes:
            self._shapes.popitem(last=False)
        return done

    def _build(self, module, inputs, entry, part: str) -> List[str]:
        if self._int8 is None:
            return self.engine.build(module, inputs, entry, self.precision, self.device)
        if part not in self._int8:
            from .int8 import Int8Unavailable
            raise Int8Unavailable(f"the int8 ranges have no part {part!r} of {self.name}; re-run training.quantize")
        return self.engine.build(module, inputs, entry, self.precision, self.device, int8_ranges=self._int8[part])

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.parts_for(x)
        if self.cfg.run_parts is not None:
            return self.cfg.run_parts(self.model, parts, x.float())
        return parts["model"](x.float())
