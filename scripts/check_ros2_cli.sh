#!/usr/bin/env bash
# Issue 16, item 6: the README's `ros2 launch` / `ros2 param` / `ros2 lifecycle` commands, run for real
# against irstd_ros. launch, launch_ros and ros2cli are not on PyPI, so this installs them (pure Python)
# from upstream sources into an overlay on the project's venv, then runs the commands on a private
# localhost-only graph and prints PASS/FAIL per step. It downloads nothing from GitHub: ROS2_SRC must
# hold checkouts (`git archive <tag> | tar -x`) made beforehand, of these tags (the newest the mirror had):
#   launch/ 3.7.1   launch_ros/ 0.28.0   ros2cli/ 0.36.1   rosidl_runtime_py/ 0.14.0   rcl_interfaces/ 2.2.0
# (osrf-pycommon, argcomplete and psutil come from PyPI.)
#
#   ROS2_SRC=/tmp/ros2-src bash scripts/check_ros2_cli.sh [editable|prefix]
#     editable  the venv as `make install` left it (scripts/link_share.py's links), venv not activated
#     prefix    a non-editable install (wheel, `pip install --prefix`) of this work tree, layered on the venv
# Env: VENV (.venv), OVERLAY (/tmp/ros2cli-overlay, rebuilt), TIMEOUT (s per step, 60), ROS_DOMAIN_ID (77),
#      MODEL (launched, lrrnet), SWAP (hot-swapped to and back, irmamba; lrrnet when MODEL is irmamba)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd -P)
VENV=$(cd "${VENV:-$REPO/.venv}" && pwd -P)
PY=$VENV/bin/python
MODE=${1:-editable}
SRC=${ROS2_SRC:?ROS2_SRC: the folder with the launch/ launch_ros/ ros2cli/ rosidl_runtime_py/ rcl_interfaces/ checkouts}
OVERLAY=${OVERLAY:-/tmp/ros2cli-overlay}
T=${TIMEOUT:-60}
NODE=/irstd/detector
MODEL=${MODEL:-lrrnet}
SWAP=${SWAP:-$([ "$MODEL" = irmamba ] && echo lrrnet || echo irmamba)}
WORK=$(mktemp -d /tmp/check-ros2-cli.XXXXXX)
cd "$WORK"  # never the repo: its irstd_ros/ would shadow the installed one
FAILS=0
ok() { echo "PASS $1 ($2 s)"; }
bad() { echo "FAIL $1 ($2 s)"; FAILS=$((FAILS + 1)); }
since() { local ms=$(( (${EPOCHREALTIME/./} - $1) / 1000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }

echo "== overlay: $OVERLAY"
rm -rf "$OVERLAY"
"$PY" -m pip install -q --no-deps --no-build-isolation --disable-pip-version-check --target "$OVERLAY" \
  osrf-pycommon==2.0.2 argcomplete==3.7.2 psutil==7.2.2 "$SRC"/rosidl_runtime_py \
  "$SRC"/launch/{launch,launch_xml,launch_yaml,launch_testing} "$SRC"/launch_ros/{launch_ros,launch_testing_ros,ros2launch} \
  "$SRC"/ros2cli/{ros2cli,ros2pkg,ros2node,ros2service,ros2param,ros2lifecycle,ros2topic,ros2run} > pip.log 2>&1 \
  || { tail -20 pip.log; exit 1; }
# launch_ros.actions imports composition_interfaces (for LoadComposableNodes), not on PyPI and C underneath:
# its generated Python classes alone make that import work; composable nodes are not used here.
AMENT_PREFIX_PATH=$VENV "$PY" - "$SRC/rcl_interfaces/composition_interfaces" "$OVERLAY" > rosidl.log 2>&1 <<'PY' || { tail -20 rosidl.log; exit 1; }
import pathlib, shutil, sys
from rosidl_generator_py.cli import GeneratePython
src, overlay = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out = pathlib.Path("composition_interfaces.gen")
srvs = sorted(f"{src}:srv/{p.name}" for p in (src / "srv").glob("*.srv"))  # prefix:relative path
GeneratePython("py").generate("composition_interfaces", srvs, [sys.prefix + "/share"], out)
dst = overlay / "composition_interfaces" / "srv"
dst.mkdir(parents=True)
(dst.parent / "__init__.py").touch()
for f in (out / "srv").glob("*.py"):
    shutil.copy(f, dst)
PY

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-77} ROS_LOG_DIR=$WORK/roslog
if [ "$MODE" = prefix ]; then
  echo "== non-editable install into $WORK/prefix"
  mkdir src && (cd "$REPO" && git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$WORK/src")
  # never `"$PY" -m pip install --prefix`: that pip sees the venv's editable irstd_ros and uninstalls it. The
  # wheel is installed by the base interpreter's pip, which cannot see the venv.
  { "$PY" -m pip wheel -q --no-deps --no-build-isolation --disable-pip-version-check -w wheel ./src &&
    "$("$PY" -c 'import sys; print(sys._base_executable)')" -m pip install -q --no-deps --ignore-installed \
      --disable-pip-version-check --no-warn-script-location --prefix "$WORK/prefix" wheel/irstd_ros-*.whl
  } > pip-prefix.log 2>&1 || { tail -20 pip-prefix.log; exit 1; }
  SITE=$(echo "$WORK"/prefix/lib/python3*/site-packages)
  # the prefix has no python of its own: lib/irstd_ros/detector runs python3 from PATH, the venv's
  export PYTHONPATH=$SITE:$OVERLAY AMENT_PREFIX_PATH=$WORK/prefix:$VENV PATH=$OVERLAY/bin:$VENV/bin:$PATH
else
  export PYTHONPATH=$OVERLAY AMENT_PREFIX_PATH=$VENV PATH=$OVERLAY/bin:$PATH
fi
echo "irstd_ros prefix: $(ros2 pkg prefix irstd_ros), module: $("$PY" -c 'import irstd_ros; print(irstd_ros.__file__)')"

# 1. ros2 launch: the lifecycle node configures and activates itself (autostart)
t0=${EPOCHREALTIME/./}
setsid timeout --foreground -s INT 900 ros2 launch -n irstd_ros detector.launch.py model:=$MODEL > launch.log 2>&1 &
LAUNCH=$!
stop() {
  kill -INT "$LAUNCH" 2>/dev/null || return 0
  for _ in $(seq 30); do kill -0 "$LAUNCH" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$LAUNCH" 2>/dev/null || true
}
trap stop EXIT
echo "== 1. ros2 launch irstd_ros detector.launch.py model:=$MODEL"
for _ in $(seq $((T * 2))); do grep -q "active: listening" launch.log && break; kill -0 $LAUNCH 2>/dev/null || break; sleep 0.5; done
sed 's/^/    /' launch.log
if grep -q "active: listening" launch.log; then ok "1. launch" "$(since "$t0")"; else bad "1. launch" "$(since "$t0")"; fi

# a ros2 command whose output must contain $2. No daemon is left behind, so each try discovers the graph
# anew for 3 s, and on a loaded machine that sometimes misses the node's services ("Node not found":
# nothing was sent, so it is tried again, 4 tries in all).
check() {
  local name=$1 want=$2 out t0=${EPOCHREALTIME/./}; shift 2
  echo "== $name: ros2 $*"
  for try in 1 2 3 4; do
    out=$(timeout "$T" ros2 "$@" --no-daemon --spin-time 3 2>&1) || true
    grep -q "^Node not found" <<<"$out" || break
    echo "    (try $try: Node not found)"
  done
  printf '%s\n' "$out" | sed 's/^/    /'
  if grep -qF -- "$want" <<<"$out"; then ok "$name" "$(since "$t0")"; else bad "$name" "$(since "$t0")"; fi
}
# 2. parameters
check "2. param set" "Set parameter successful" param set $NODE threshold 0.7
check "2. param get" "Double value is: 0.7" param get $NODE threshold
# the image subscription's QoS, through ROS 2's standard (read-only) qos_overrides parameters
QOS=qos_overrides./irstd/image.subscription
check "2. qos override get" "String value is: best_effort" param get $NODE $QOS.reliability
check "2. qos override is read-only" "read-only" param set $NODE $QOS.reliability reliable
# 3. lifecycle
check "3. lifecycle get" "active [3]" lifecycle get $NODE
check "3. lifecycle deactivate" "Transitioning successful" lifecycle set $NODE deactivate
check "3. lifecycle get" "inactive [2]" lifecycle get $NODE
check "3. lifecycle activate" "Transitioning successful" lifecycle set $NODE activate
check "3. lifecycle get" "active [3]" lifecycle get $NODE
# 4. hot swap to another model and back: each reload is confirmed by the node's "now running" log line
swap() {
  local to=$1 n t0=${EPOCHREALTIME/./}
  n=$(grep -c "now running $to/" launch.log || true)
  check "4. param set model $to" "Set parameter successful" param set $NODE model "$to"
  for _ in $(seq $((T * 2))); do [ "$(grep -c "now running $to/" launch.log || true)" -gt "$n" ] && break; sleep 0.5; done
  grep "now running $to/" launch.log | tail -n 1 | sed 's/^/    /'
  if [ "$(grep -c "now running $to/" launch.log || true)" -gt "$n" ]; then ok "4. now running $to" "$(since "$t0")"
  else bad "4. now running $to" "$(since "$t0")"; fi
}
swap "$SWAP"
swap "$MODEL"

stop
echo "== launch log after shutdown"
tail -n 4 launch.log | sed 's/^/    /'
echo "$FAILS failed ($MODE; logs in $WORK)"
[ "$FAILS" -eq 0 ]
