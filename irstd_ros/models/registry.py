"""A name -> constructor registry, so the node and the CLIs select a network by one string.

Modelled on timm: each model module decorates its factory with ``@register_model``;
``create_model("lrrnet", **cfg)`` builds it.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch.nn as nn

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its own name. Names are unique."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **cfg) -> nn.Module:
    """Build a registered model by name; unknown names raise ``KeyError`` listing the known ones."""
    try:
        factory = _REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None
    return factory(**cfg)
