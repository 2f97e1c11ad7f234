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
pip_install() {  # quiet, minus the local-index location warnings, but never hiding a failure
  "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
  return "${PIPESTATUS[0]}"
}
pip_install --upgrade pip
pip_install -r requirements.txt
pip_install --no-deps -e .
# the editable install skips setup.py's data_files: register the package in the venv's ament index
"$VENV/bin/python" scripts/link_share.py "$VENV"
# vision_msgs from interfaces/ (a no-op when up to date or provided by a system ROS 2)
VENV="$VENV" bash scripts/build_interfaces.sh
# the fused C++ CPU kernels of irstd_ros.ops, built once here so no node compiles on its first frame;
# without a compiler the ops still work (torch fallback), so this warns instead of failing
"$VENV/bin/python" -c "import sys; from irstd_ros.ops import cpu_extension; sys.exit(cpu_extension.main())" || echo "setup: WARNING: C++ CPU kernels not built (see above)" >&2
"$VENV/bin/python" - <<'PY'
import cv2, numpy, rclpy, torch, irstd_ros, vision_msgs.msg  # fail here, not in the job, if anything is missing
print(f"irstd_ros {irstd_ros.__version__} ready: torch {torch.__version__}, numpy {numpy.__version__}, rclpy ok")
PY
