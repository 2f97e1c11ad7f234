"""A name -> (constructor, configuration) registry, so one string selects a network and all it needs.

Modelled on timm: each model module decorates its factory with
``@register_model(ModelCfg(...))``; ``create_model("lrrnet", **args)`` builds it and
``model_cfg("lrrnet")`` tells the node, training and eval what is particular to it
(stride, shipped weights, training loss, test-sized variant). Nothing outside the
model module keeps a per-model constant.

Names are matched case-insensitively and stored lower-case.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple


@dataclass(frozen=True)
class Knob:
    """A per-model setting the node exposes as the parameter ``<model>.<name>`` and applies on the next frame
    through the model's ``configure(**{name: value})``. ``auto`` means "as the loaded weights were exported"."""

    name: str
    auto: Any                                     # the parameter's default: keep the weights' own value
    description: str
    range: Optional[Tuple[float, float]] = None   # numbers: inclusive bounds (``auto`` included)
    choices: Optional[Tuple[str, ...]] = None     # strings: allowed values (``auto`` included)


@dataclass(frozen=True)
class ModelCfg:
    """What the rest of the package needs to know about a registered network."""

    stride: int                                   # input H, W must be multiples (the pipeline pads)
    weights: Optional[str] = None                 # shipped checkpoint in irstd_ros/weights/, if any
    loss: str = "seg"                             # training loss (irstd_ros.losses.LOSSES)
    tiny_args: Dict[str, Any] = field(default_factory=dict)  # a small variant for fast tests
    paper_params: Optional[Tuple[float, float]] = None       # (parameter count, tolerance) of the paper config
    # (recognises(state_dict), load(model, state_dict) -> report with .lines()): foreign checkpoints that
    # training's ``init_from`` accepts besides our own (e.g. MobileSAM for IRSAM)
    init_adapter: Optional[Tuple[Callable[[dict], bool], Callable[[Any, dict], Any]]] = None
    # (model, frame) -> {part: (module, example inputs)}: what a runtime compiles when the forward pass is not
    # one graph (IRSTD-Diff: the per-frame condition and one denoising step); None: the whole model
    export_parts: Optional[Callable[[Any, Any], Dict[str, Tuple[Any, tuple]]]] = None
    # (model, {part: compiled callable}, image) -> mask logits: the forward pass over compiled export parts
    # (IRSTD-Diff's sampling loop around its compiled step); None: the single part "model" is the forward pass
    run_parts: Optional[Callable[[Any, Dict[str, Callable], Any], Any]] = None
    # deployment backends this network runs under (irstd_ros.runtime.backends.BACKENDS names)
    backends: Tuple[str, ...] = ("torch", "openvino", "onnxruntime", "tensorrt")
    knobs: Tuple[Knob, ...] = ()                  # node parameters ``<model>.<knob>``, live (see Knob)
    # another registered model this one only re-configures (same module and class, other widths): the tests of
    # the machinery around a network (resume, eval, engines, hot swap) run once per architecture, not per variant
    variant_of: Optional[str] = None
    description: str = ""


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    factory: Callable[..., Any]
    cfg: ModelCfg


_REGISTRY: Dict[str, RegisteredModel] = {}


def register_model(cfg: ModelCfg):
    """Decorator: register ``fn`` under its lower-cased name with ``cfg``. Names are unique."""
    if callable(cfg) and not isinstance(cfg, ModelCfg):
        raise TypeError("register_model takes a ModelCfg: @register_model(ModelCfg(stride=...))")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__.lower()
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = RegisteredModel(name, fn, cfg)
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _lookup(name: str) -> RegisteredModel:
    try:
        return _REGISTRY[str(name).lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def model_cfg(name: str) -> ModelCfg:
    """The registered configuration of ``name``; unknown names raise ``KeyError`` listing the known ones."""
    return _lookup(name).cfg


def create_model(name: str, **args):
    """Build a registered model by name; unknown names raise ``KeyError`` listing the known ones."""
    return _lookup(name).factory(**args)
