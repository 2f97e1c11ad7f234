#!/usr/bin/env bash
# Create .venv in the repo root and install irstd_ros with everything it needs (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -m pip install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -m pip install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" - <<'PY'
import cv2, numpy, rclpy, torch, irstd_ros  # fail here, not in the job, if anything is missing
print(f"irstd_ros {irstd_ros.__version__} ready: torch {torch.__version__}, numpy {numpy.__version__}, rclpy ok")
PY
