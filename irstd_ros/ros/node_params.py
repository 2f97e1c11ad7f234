"""The detector node's parameters: one table, pure validation, importing neither torch nor rclpy.

The node declares these with descriptors (ranges, read-only flags); the launch
helper and tests read the same table. ``live`` parameters take effect on the
next frame when set through the parameter services; ``reload`` ones load a new
model in the background and swap it in; the rest apply at the next configure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

from ..runtime.backends import BACKENDS, DESCRIPTION as BACKEND_DESCRIPTION
from ..runtime.precision import PRECISIONS
from .image_codec import DEFAULT_MAX_PIXELS, NORMALIZATIONS

DEVICE_SYNTAX = re.compile(r"cpu|cuda(:(0|[1-9][0-9]*))?")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    range: Optional[Tuple[float, float]] = None     # inclusive bounds for numbers
    choices: Optional[Sequence[str]] = None
    effect: str = "live"                            # live | reload | configure
    exclusive: bool = False                         # open interval (for threshold)


def _models() -> Sequence[str]:
    from ..models import list_models  # imports torch: only the node, which has it already, gets here
    return list_models()


def stride_problem(model: str, input_size: int) -> Optional[str]:
    """Why ``input_size`` cannot be used with ``model`` (not a multiple of its registered stride), else None."""
    if not input_size:
        return None
    from ..models import model_cfg  # imports torch: only the node, which has it already, gets here
    try:
        stride = model_cfg(model).stride
    except KeyError:
        return None  # an unknown model is refused on its own
    if input_size % stride:
        return f"input_size={input_size} must be 0 or a multiple of {model}'s stride {stride}"
    return None


PARAMS = (
    ParamSpec("model", "lrrnet", "Network to run (registry name).", choices=None, effect="reload"),
    ParamSpec("weights", "", "Checkpoint path; empty for the model's shipped weights.", effect="reload"),
    ParamSpec("backend", "torch", f"Inference backend. {BACKEND_DESCRIPTION}", choices=BACKENDS, effect="reload"),
    ParamSpec("device", "cpu", "Device: cpu, cuda, cuda:N.", effect="reload"),
    ParamSpec("precision", "auto", "auto: bf16 on CPUs that compute it natively (AMX/AVX512-BF16), else fp32; fp32 "
              "for torch on a GPU and on onnxruntime, fp16 on tensorrt. fp16 runs on GPUs only. int8: openvino or "
              "onnxruntime, with the int8 ranges shipped beside the weights (lrrnet).",
              choices=PRECISIONS, effect="reload"),
    ParamSpec("cache_dir", "", "Compiled engines of the non-torch backends; empty: $IRSTD_CACHE_DIR or "
              "~/.cache/irstd_ros/engines. Pre-build them with irstd-build.", effect="reload"),
    ParamSpec("threshold", 0.5, "Probability above which a pixel is target, in (0, 1).", range=(0.0, 1.0),
              exclusive=True),
    ParamSpec("min_area", 1, "Smallest component kept, in pixels.", range=(1, 1_000_000)),
    ParamSpec("max_area", 0, "Largest component kept, in pixels; 0 for no limit.", range=(0, 100_000_000)),
    ParamSpec("max_detections", 0, "Keep the N highest-scoring detections; 0 for all.", range=(0, 100_000)),
    ParamSpec("input_size", 0, "0: native resolution padded to the stride (recommended); N: resize frames "
              "to NxN like the papers' protocol.", range=(0, 4096)),
    ParamSpec("publish_mask", True, "Publish the mono8 0/255 mask on 'mask'."),
    ParamSpec("publish_scores", False, "Publish 32FC1 probabilities on 'scores'."),
    ParamSpec("publish_overlay", True, "Publish an rgb8 debug view on 'overlay' (only while subscribed)."),
    ParamSpec("mono16_normalization", "stretch", "16-bit input: per-frame robust percentile stretch, or "
              "value/65535 (full_range).", choices=NORMALIZATIONS),
    ParamSpec("max_image_pixels", DEFAULT_MAX_PIXELS, "Frames with more pixels are rejected.",
              range=(1, 1 << 28)),
    ParamSpec("class_name", "target", "class_id reported in detections and label_info."),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", range=(0.1, 60.0),
              effect="configure"),
    ParamSpec("stall_periods", 5, "/diagnostics goes ERROR when frames arrive but nothing is published for this "
              "many typical inference times (median recent latency; never under 5 s).", range=(1, 10_000)),
)
SPECS = {p.name: p for p in PARAMS}
_KNOB_SPECS: Optional[dict] = None


def knob_specs() -> dict:
    """``<model>.<knob>`` -> ParamSpec for every registered model's knobs (live; ``auto`` keeps the weights'
    own setting). Imports the models (torch): only the node and tests get here."""
    global _KNOB_SPECS
    if _KNOB_SPECS is None:
        from ..models import list_models, model_cfg
        _KNOB_SPECS = {f"{m}.{k.name}": ParamSpec(f"{m}.{k.name}", k.auto, f"[{m}] {k.description}", range=k.range,
                                                   choices=k.choices)
                       for m in list_models() for k in model_cfg(m).knobs}
    return _KNOB_SPECS


def split_knob(name: str) -> Optional[Tuple[str, str]]:
    """(model, knob) for a knob parameter's name, else None (no import of the models for the fixed table)."""
    if name in SPECS or "." not in name:
        return None
    return tuple(name.split(".", 1)) if name in knob_specs() else None  # type: ignore[return-value]


def validate(name: str, value: Any) -> Optional[str]:
    """None if ``value`` is acceptable for ``name``, else the reason it is refused."""
    spec = SPECS.get(name)
    if spec is None and "." in name:
        spec = knob_specs().get(name)
    if spec is None:
        return None  # not ours (use_sim_time, ...)
    choices = _models() if name == "model" else spec.choices
    if isinstance(spec.default, bool):
        if not isinstance(value, bool):
            return f"{name} must be a bool"
        return None
    if isinstance(spec.default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number"
        if isinstance(spec.default, int) and not isinstance(value, int):
            return f"{name} must be an integer"
        if value != value:
            return f"{name} must not be NaN"
        lo, hi = spec.range
        if spec.exclusive and not lo < value < hi:
            return f"{name}={value} is out of range: must be in ({lo}, {hi})"
        if not spec.exclusive and not lo <= value <= hi:
            return f"{name}={value} is out of range: must be in [{lo}, {hi}]"
        return None
    if not isinstance(value, str):
        return f"{name} must be a string"
    if choices is not None and value not in choices:
        return f"{name}={value!r} is not one of: {', '.join(choices)}"
    if name == "device" and not DEVICE_SYNTAX.fullmatch(value):
        return f"device={value!r}: use cpu, cuda or cuda:N"
    return None
