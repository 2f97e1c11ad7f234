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


def add_engine_args(parser) -> None:
    """``--backend``, ``--precision`` and ``--cache-dir``, the same choices as the node's parameters."""
    from ..runtime.backends import BACKENDS, DESCRIPTION
    from ..runtime.precision import PRECISIONS
    parser.add_argument("--backend", default="torch", choices=BACKENDS, help=DESCRIPTION)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: what the backend runs fastest here (bf16 on CPUs with native bf16); int8: openvino "
                             "or onnxruntime, with the weights' shipped int8 ranges")
    parser.add_argument("--cache-dir", default="", help="compiled engines (default: ~/.cache/irstd_ros/engines)")


def engine_config(args) -> Dict[str, Any]:
    """DetectorConfig keywords from :func:`add_engine_args`' options."""
    return {"backend": args.backend, "precision": args.precision, "cache_dir": args.cache_dir or None}


def engine_ros_args(args) -> list:
    """The same choices as node parameters, for the tools that start the node."""
    out = ["-p", f"backend:={args.backend}", "-p", f"precision:={args.precision}"]
    return out + (["-p", f"cache_dir:={args.cache_dir}"] if args.cache_dir else [])
