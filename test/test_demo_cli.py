"""irstd-demo's input checks: weights the node could not load fail at once, in one line, instead of
leaving the demo waiting for a node that stays unconfigured; a new model runs from a checkpoint."""
from __future__ import annotations

import subprocess
import sys

import pytest

from irstd_ros.runtime.checkpoints import ships_weights
from irstd_ros.models import list_models

from conftest import tiny_checkpoint  # noqa: I100

DEMO = [sys.executable, "-m", "irstd_ros.cli.demo"]


def run(*args):
    return subprocess.run([*DEMO, *map(str, args)], capture_output=True, text=True, timeout=300)


UNSHIPPED = [n for n in list_models() if not ships_weights(n)]


@pytest.mark.parametrize("args, fragment", [
    pytest.param(("--model", UNSHIPPED[0]) if UNSHIPPED else (), f"no shipped weights for model '{UNSHIPPED[0]}'"
                 if UNSHIPPED else "", marks=() if UNSHIPPED else pytest.mark.skip(reason="every model ships weights")),
    (("--model", "yolo"), "unknown model 'yolo'"),
    (("--model", "irmamba", "--weights", "irstd_ros/weights/lrrnet_sirst-v1.pt"), "is for model 'lrrnet'"),
    (("--weights", "missing.pt"), "checkpoint not found"),
])
def test_unloadable_weights_fail_in_one_line(args, fragment):
    r = run(*args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and fragment in lines[0], r.stderr


def test_offline_demo_runs_irmamba_from_a_checkpoint(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "irmamba.pt", "irmamba")
    r = run("--model", "irmamba", "--weights", ckpt, "--offline")
    assert r.returncode == 0, r.stderr
    assert "irmamba/" in r.stdout and "Misc_" in r.stdout


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if ships_weights(n) else pytest.mark.skip(
    reason=f"{n} ships no weights yet")) for n in list_models() if n != "lrrnet"])
def test_offline_demo_runs_each_shipped_model_with_no_weights_flag(name):
    r = run("--model", name, "--offline")
    assert r.returncode == 0, r.stderr
    assert f"{name}/" in r.stdout and "Misc_" in r.stdout
