"""Frames larger than Fast DDS's default shared-memory segment get through with config/fastdds_large_frames.xml."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ros_harness  # noqa: F401  (sets the isolated ROS environment)
from ros_harness import DETECTOR

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_large_frames.xml"


def test_1024x1024_mono16_best_effort_frame_is_answered_with_the_profile(tmp_path):
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(PROFILE),
               ROS_DOMAIN_ID=str((int(os.environ["ROS_DOMAIN_ID"]) + 50) % 101))
    ns = f"irstd_large_{os.getpid()}"
    log = open(tmp_path / "node.log", "w")
    node = subprocess.Popen([*DETECTOR, "--ros-args", "-r", f"__ns:=/{ns}", "-p", "publish_overlay:=false"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        r = subprocess.run([sys.executable, str(REPO / "test" / "large_frame_client.py"), ns, "1024", "1024", "90"],
                           env=env, capture_output=True, text=True, timeout=240)
        assert "answered" == r.stdout.strip().splitlines()[-1], r.stdout + r.stderr
    finally:
        node.terminate()
        node.wait(timeout=30)


def _transport(env, n=20, size=1024, rate=10.0) -> int:
    sub = subprocess.Popen([sys.executable, str(REPO / "bench" / "frame_transport.py"), "sub", str(n), "40"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert sub.stdout.readline().strip() == "ready"
    subprocess.run([sys.executable, str(REPO / "bench" / "frame_transport.py"), "pub", str(n), str(size), str(size),
                    str(rate)], env=env, capture_output=True, timeout=120, check=True)
    out, _ = sub.communicate(timeout=60)
    return int(out.strip().split()[-1])


def test_profile_carries_a_stream_of_large_best_effort_frames():
    """20 frames of 1024x1024 mono16 (2 MB) at 10 Hz, best effort, between two processes.

    Without the profile, bench/bench_fastdds_frames.py saw 1 of 20 such frames arrive
    here (README, "Large frames and Fast DDS"); with it, all did.
    """
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(PROFILE),
               ROS_DOMAIN_ID=str((int(os.environ["ROS_DOMAIN_ID"]) + 60) % 101))
    assert _transport(env) >= 16
