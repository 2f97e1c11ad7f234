"""What ``launch/detector.launch.py`` starts, as a plain function (launch_ros is not pip-installable).

The launch file is a thin layer over :func:`detector_node_config`; tests call
the function directly, and the README's launch-less command line is
:func:`command_line` of the same result. It imports neither torch nor rclpy, so
``ros2 launch`` starts the node without paying their import first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the irstd_ros package


def config_dir() -> Path:
    """``share/irstd_ros/config`` when installed by colcon, else the source tree's ``config/``."""
    try:
        from ament_index_python.packages import get_package_share_directory, PackageNotFoundError
        try:
            share = Path(get_package_share_directory("irstd_ros")) / "config"
            if share.is_dir():
                return share
        except (PackageNotFoundError, OSError, LookupError):  # OSError: AMENT_PREFIX_PATH unset (pip install)
            pass
    except ImportError:
        pass
    return PACKAGE_DIR.parent / "config"


def configured_models() -> List[str]:
    """Models with a ``config/<model>.yaml``: every shipped model has one (listed without importing torch)."""
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


@dataclass
class NodeConfig:
    package: str = "irstd_ros"
    executable: str = "detector"
    name: str = "detector"
    namespace: str = "irstd"
    parameters: List = field(default_factory=list)   # params files (str) and dicts, in override order
    remappings: List[Tuple[str, str]] = field(default_factory=list)
    log_level: str = "info"


def detector_node_config(model: str = "lrrnet", namespace: str = "irstd", image_topic: str = "",
                         params_file: str = "", use_sim_time: bool = False, log_level: str = "info",
                         extra_parameters: Optional[Dict] = None) -> NodeConfig:
    """Parameters and remappings for one detector node.

    ``params_file`` defaults to ``config/<model>.yaml``; the ``model`` argument
    and ``use_sim_time`` override what the file says. ``image_topic`` empty keeps
    ``<namespace>/image``. With an explicit ``params_file`` any model name passes
    here; the node checks it against the registry at configure.
    """
    if not params_file and model not in configured_models():
        raise ValueError(f"unknown model {model!r}; known: {', '.join(configured_models())}")
    if log_level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    if isinstance(use_sim_time, str):
        use_sim_time = use_sim_time.strip().lower() in ("true", "1", "yes")
    params_path = Path(params_file) if params_file else config_dir() / f"{model}.yaml"
    if not params_path.is_file():
        raise FileNotFoundError(f"params file not found: {params_path}")
    overrides = {"model": model, "use_sim_time": bool(use_sim_time), **(extra_parameters or {})}
    remaps = [("image", image_topic)] if image_topic else []
    return NodeConfig(namespace=namespace.strip("/"), parameters=[str(params_path), overrides],
                      remappings=remaps, log_level=log_level)


def command_line(cfg: NodeConfig, executable: str = "irstd-detector") -> List[str]:
    """The same node as a plain command (no launch), e.g. for the README or a subprocess."""
    args = [executable, "--ros-args", "-r", f"__node:={cfg.name}", "-r", f"__ns:=/{cfg.namespace}",
            "--log-level", cfg.log_level]
    for p in cfg.parameters:
        if isinstance(p, str):
            args += ["--params-file", p]
        else:
            for k, v in p.items():
                args += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    for src, dst in cfg.remappings:
        args += ["-r", f"{src}:={dst}"]
    return args
