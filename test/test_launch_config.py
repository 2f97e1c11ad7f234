"""The launch file's logic as a plain function, and the launch file itself where launch_ros exists."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import time
import sys
from pathlib import Path

import pytest
import yaml

from irstd_ros.ros.launch_config import command_line, config_dir, detector_node_config
from irstd_ros.ros.node_params import PARAMS, SPECS, validate

REPO = Path(__file__).resolve().parents[1]


def test_defaults_load_the_model_config():
    cfg = detector_node_config()
    assert cfg.namespace == "irstd" and cfg.name == "detector"
    params_file, overrides = cfg.parameters
    assert Path(params_file) == config_dir() / "lrrnet.yaml"
    assert overrides == {"model": "lrrnet", "use_sim_time": False}
    assert cfg.remappings == []


def test_arguments_map_to_parameters_and_remaps(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    threshold: 0.3\n")
    cfg = detector_node_config(model="lrrnet", namespace="/uav1/irstd", image_topic="/thermal/image_raw",
                               params_file=str(p), use_sim_time="true", log_level="debug")
    assert cfg.namespace == "uav1/irstd"
    assert cfg.parameters == [str(p), {"model": "lrrnet", "use_sim_time": True}]
    assert cfg.remappings == [("image", "/thermal/image_raw")]
    cmd = command_line(cfg)
    assert cmd[:2] == ["irstd-detector", "--ros-args"]
    assert "__ns:=/uav1/irstd" in cmd and "image:=/thermal/image_raw" in cmd
    assert cmd[cmd.index("--params-file") + 1] == str(p) and "use_sim_time:=true" in cmd


@pytest.mark.parametrize("kwargs, err", [({"model": "yolo"}, "unknown model"),
                                          ({"log_level": "loud"}, "log_level"),
                                          ({"params_file": "/nope.yaml"}, "params file not found")])
def test_bad_arguments(kwargs, err):
    with pytest.raises((ValueError, FileNotFoundError), match=err):
        detector_node_config(**kwargs)


def _flatten(params: dict, prefix: str = "") -> dict:
    """ROS 2 YAML nests dotted parameter names (``irstd_diff: {mode: ce}`` is ``irstd_diff.mode``)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_shipped_config_matches_the_declared_parameters():
    from irstd_ros.ros.node_params import knob_specs
    for path in (REPO / "config").glob("*.yaml"):
        params = _flatten(yaml.safe_load(path.read_text())["/**"]["ros__parameters"])
        for name, value in params.items():
            assert name in SPECS or name in knob_specs(), f"{path.name}: {name} is not a declared parameter"
            assert validate(name, value) is None, f"{path.name}: {validate(name, value)}"


def test_parameter_table_is_self_consistent():
    for spec in PARAMS:
        assert spec.description and validate(spec.name, spec.default) is None, spec.name
    assert validate("threshold", 1.0) and validate("threshold", 0.0) and validate("threshold", 0.999) is None
    assert validate("max_image_pixels", 0) and validate("mono16_normalization", "fast")
    assert validate("min_area", 2.5) and validate("publish_mask", 1)
    assert validate("input_size", 5000) and validate("input_size", 256) is None and validate("input_size", 0) is None


def test_readme_documents_every_parameter_and_topic():
    text = (REPO / "README.md").read_text()
    from irstd_ros.ros.node_params import knob_specs
    for spec in list(PARAMS) + list(knob_specs().values()):
        assert f"`{spec.name}`" in text, spec.name
    for topic in ("image", "detections", "mask", "scores", "overlay", "label_info", "/diagnostics"):
        assert f"`{topic}`" in text, topic


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch_ros is not installable from PyPI; this runs on a ROS 2 distro")
def test_launch_file_builds_a_lifecycle_node():
    from launch import LaunchContext
    from launch_ros.actions import LifecycleNode

    spec = importlib.util.spec_from_file_location("detector_launch", REPO / "launch" / "detector.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    ctx = LaunchContext()
    for action in ld.entities[:-1]:
        action.visit(ctx)
    nodes = ld.entities[-1].execute(ctx)
    assert len(nodes) == 1 and isinstance(nodes[0], LifecycleNode)


def test_the_launch_helper_imports_neither_torch_nor_rclpy():
    """``ros2 launch`` must not pay torch's import (seconds) before the node starts."""
    code = ("import sys; from irstd_ros.ros.launch_config import detector_node_config; "
            "import irstd_ros.ros.node_params; detector_node_config(); "
            "print(sorted(m for m in ('torch', 'rclpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_device_syntax():
    for ok in ("cpu", "cuda", "cuda:0", "cuda:12"):
        assert validate("device", ok) is None, ok
    for bad in ("gpu", "cuda:", "cuda:-1", "cuda:01", "cudax", "cuda:1:2", " cpu", ""):
        assert validate("device", bad), bad


def test_the_install_registers_the_package_in_the_ament_index_of_its_prefix():
    """`make` installs editable, which skips setup.py's data_files; scripts/link_share.py puts them in the venv,
    so ament_index_python (hence `ros2 launch irstd_ros ...`, `ros2 run irstd_ros detector`) finds the package
    with the venv as its prefix: the marker, package.xml, the launch file, a config per model, the executable."""
    pytest.importorskip("ament_index_python")
    from irstd_ros.models import list_models
    code = ("from ament_index_python.packages import get_package_share_directory as s, get_package_prefix as p; "
            "print(s('irstd_ros')); print(p('irstd_ros'))")
    env = {**os.environ, "AMENT_PREFIX_PATH": sys.prefix}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    share, prefix = (Path(line) for line in r.stdout.split())
    assert share == Path(sys.prefix) / "share" / "irstd_ros" and prefix == Path(sys.prefix)
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    assert (share / "launch" / "detector.launch.py").is_file()
    for name in list_models():
        assert (share / "config" / f"{name}.yaml").is_file(), name
    exe = prefix / "lib" / "irstd_ros" / "detector"
    assert exe.is_file() and os.access(exe, os.X_OK)


def test_the_ros2_run_executable_starts_the_node_with_the_prefix_python_off_path(tmp_path):
    """`ros2 run` and launch_ros exec <prefix>/lib/irstd_ros/detector with whatever PATH they have: it must find
    the venv's Python itself (a `#!/usr/bin/env python3` line found the system's, which has no irstd_ros). A bad
    model gets the node's one-line refusal, which proves the node itself ran."""
    exe = Path(sys.prefix) / "lib" / "irstd_ros" / "detector"
    if not exe.is_file():
        pytest.skip("no lib/irstd_ros/detector in this prefix (not installed by make)")
    env = {**os.environ, "PATH": "/usr/bin:/bin", "ROS_LOG_DIR": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([str(exe), "--ros-args", "-r", "__node:=wrapper_probe", "-p", "model:=no_such_model"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        deadline = time.time() + 60
        for line in proc.stdout:  # the node keeps running after its refusal: read until it shows
            seen.append(line)
            if "no_such_model" in line or time.time() > deadline:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = "".join(seen)
    assert "No module named" not in out, out
    assert "no_such_model" in out, out
