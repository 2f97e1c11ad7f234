"""Command-line entry points. Each prints a one-line error and exits 2 on bad input."""
from __future__ import annotations

from typing import Any, Dict, Sequence

from ..errors import IRSTDError


def parse_knobs(items: Sequence[str]) -> Dict[str, Any]:
    """``["mode=ce", "sampling_steps=4"]`` -> ``{"mode": "ce", "sampling_steps": 4}`` (integers as ints)."""
    out: Dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise IRSTDError(f"--knob takes NAME=VALUE, got {item!r}")
        out[name.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    return out


def knob_ros_args(model: str, items: Sequence[str]) -> list:
    """The same knobs as node parameters (``-p <model>.<name>:=<value>``), for the tools that start the node."""
    out: list = []
    for name, value in parse_knobs(items).items():
        out += ["-p", f"{model}.{name}:={value}"]
    return out
