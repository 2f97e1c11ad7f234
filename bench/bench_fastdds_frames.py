"""How many best-effort frames Fast DDS delivers between two processes, with and without our profile.

    .venv/bin/python bench/bench_fastdds_frames.py [--sizes 256 512 640 1024 2048] [--frames 20] [--rate 10]

Each row runs bench/frame_transport.py as a subscriber and a publisher process
(mono16, square frames) on a private localhost-only domain.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "frame_transport.py"
PROFILE = REPO / "config" / "fastdds_large_frames.xml"


def run(size: int, frames: int, rate: float, profile: bool, domain: int) -> int:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain),
               ROS_LOG_DIR=tempfile.mkdtemp())
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    sub = subprocess.Popen([sys.executable, str(SCRIPT), "sub", str(frames), str(frames / rate + 15)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    sub.stdout.readline()
    subprocess.run([sys.executable, str(SCRIPT), "pub", str(frames), str(size), str(size), str(rate)], env=env,
                   capture_output=True, check=True)
    out, _ = sub.communicate()
    return int(out.strip().split()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 640, 1024, 2048])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--rate", type=float, default=10.0)
    args = ap.parse_args()
    print(f"best-effort mono16 frames received of {args.frames} sent at {args.rate:g} Hz (two processes)")
    print(f"  {'size':>9}  {'MB':>5}  {'default':>8}  {'profile':>8}")
    for k, s in enumerate(args.sizes):
        plain = run(s, args.frames, args.rate, False, 90 + 2 * k)
        prof = run(s, args.frames, args.rate, True, 91 + 2 * k)
        print(f"  {s:>4}x{s:<4}  {2 * s * s / 1e6:5.2f}  {plain:>8}  {prof:>8}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
