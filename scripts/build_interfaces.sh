#!/usr/bin/env bash
# Build the ROS 2 interface package interfaces/vision_msgs (not on PyPI) into the venv, so that
# `from vision_msgs.msg import Detection2DArray` works in the venv's rclpy with no env vars at run time.
#
# Idempotent:
#   - a ROS distro that already provides vision_msgs (e.g. /opt/ros/<distro> sourced) is used as is;
#   - nothing is rebuilt while the installed package imports and its stamp matches the sources;
#   - otherwise: pip-install the pinned build wheels (requirements-build.txt), repair the cmake
#     files the wheels export (they point at the wheel builder's /opt/python/cp311-cp311), then
#     cmake configure + build + install with the venv as the install prefix.
#
# Env: VENV (default .venv, relative to the repo root), JOBS (parallel build jobs, default 2),
#      BUILD_DIR (default build/interfaces/vision_msgs-<venv hash>, removed after a good build),
#      FORCE=1 to rebuild even when the stamp matches.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
VENV=${VENV:-.venv}
JOBS=${JOBS:-2}
PKG=vision_msgs
SRC="$REPO/interfaces/$PKG"

[ -x "$VENV/bin/python" ] || { echo "build_interfaces: no venv at $VENV (run scripts/setup.sh first)" >&2; exit 1; }
VENV=$(cd "$VENV" && pwd -P)
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1

# Where a python imports vision_msgs.msg from (empty if it can't). Run from / so that nothing in
# the current directory shadows the installed package.
where_py() {  # $1 = python, rest = env prefix handled by caller
  (cd / && "$@" -c 'import os, vision_msgs.msg as m; print(os.path.dirname(os.path.dirname(os.path.realpath(m.__file__))))' 2>/dev/null) || true
}

# 1. A system ROS distro that provides vision_msgs wins: never build over it.
venv_where=$(where_py "$PY")
if [ -n "$venv_where" ] && [ "${venv_where#"$VENV"/}" = "$venv_where" ]; then
  echo "build_interfaces: using the system $PKG from $venv_where (not building)"
  exit 0
fi
if [ -z "$venv_where" ]; then
  # python3 outside this venv (a sourced ROS 2 distro puts its packages on PYTHONPATH)
  SYS_PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$VENV/bin" | paste -sd: -)
  SYS_PY=$(PATH="$SYS_PATH" command -v python3 || true)
  if [ -n "$SYS_PY" ]; then
    sys_where=$(where_py env -u VIRTUAL_ENV PATH="$SYS_PATH" "$SYS_PY")
    if [ -n "$sys_where" ] && [ "${sys_where#"$VENV"/}" = "$sys_where" ]; then
      echo "build_interfaces: using the system $PKG from $sys_where (not building);" \
           "source the ROS 2 setup so that $PY sees it too" >&2
      exit 0
    fi
  fi
fi

# 2. Up to date? The stamp hashes every input of the build.
STAMP="$VENV/share/$PKG/irstd_build.stamp"
inputs_hash() {
  {
    echo "recipe 1"
    "$PY" -c 'import sys; print(sys.version)'
    (cd "$REPO" && find "interfaces/$PKG" requirements-build.txt -type f \
       \( -name '*.msg' -o -name 'package.xml' -o -name 'CMakeLists.txt' -o -name 'requirements-build.txt' \) \
       | LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | cut -d' ' -f1
}
HASH=$(inputs_hash)
imports_ok() {  # in a clean environment, as at run time
  (cd / && env -u PYTHONPATH -u LD_LIBRARY_PATH -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u AMENT_PREFIX_PATH "$PY" -c '
from vision_msgs.msg import Detection2DArray, LabelInfo
from rclpy.serialization import serialize_message
serialize_message(Detection2DArray()); serialize_message(LabelInfo())' >/dev/null 2>&1)
}
if [ "${FORCE:-0}" != 1 ] && [ -n "$venv_where" ] && [ -f "$STAMP" ] \
   && [ "$(cat "$STAMP")" = "$HASH" ] && imports_ok; then
  echo "build_interfaces: $PKG up to date in $VENV"
  exit 0
fi

t0=$(date +%s)
# 3. Build tools: cmake and a C/C++ compiler from the machine; cmake from PyPI as a fallback.
for tool in cc c++; do
  command -v "$tool" >/dev/null || { echo "build_interfaces: '$tool' not found (apt-get install build-essential)" >&2; exit 1; }
done
pipq() {  # quiet pip install that still fails on error
  local out rc=0
  out=$("$PY" -m pip install -q "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -v -e "^WARNING: Location" -e '^$' >&2 || true
  return $rc
}
if ! command -v cmake >/dev/null && [ ! -x "$VENV/bin/cmake" ]; then
  pipq 'cmake==3.31.10'
fi
CMAKE=$(PATH="$VENV/bin:$PATH" command -v cmake)

# 4. Build wheels (ament_cmake, rosidl generators) into the venv.
pipq -r "$REPO/requirements-build.txt"
"$PY" -c 'import setuptools' 2>/dev/null || pipq setuptools   # ament_cmake_python's egg-info step
"$PY" -c 'import ament_package, catkin_pkg, rosidl_pycommon' \
  || { echo "build_interfaces: build wheels missing after pip install" >&2; exit 1; }

# 5. The ros-kilted wheels were built in a manylinux image: the *__rosidl_generator_pyExport.cmake
#    files they install give /opt/python/cp311-cp311/... as the Python and numpy include dirs of the
#    imported targets, and cmake refuses to generate with a non-existent include dir. Point them at
#    this venv's Python headers and numpy. Idempotent; must be rerun after any pip install of such
#    wheels (it is: every build runs it).
"$PY" - "$VENV" <<'PY'
import glob, os, re, sys, sysconfig
import numpy
venv = sys.argv[1]
pyinc = sysconfig.get_paths()["include"]
npinc = numpy.get_include()
if not os.path.isfile(os.path.join(pyinc, "Python.h")):
    sys.exit(f"build_interfaces: no Python.h in {pyinc} (install the python3-dev package of this Python)")
subs = [
    (re.compile(r"/opt/python/cp3\d+-cp3\d+t?/lib/python3\.\d+t?/site-packages/numpy/_core/include"), npinc),
    (re.compile(r"/opt/python/cp3\d+-cp3\d+t?/include/python3\.\d+t?"), pyinc),
]
fixed = 0
for path in glob.glob(os.path.join(venv, "share", "*", "cmake", "*.cmake")):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if "/opt/python/" not in text:
        continue
    new = text
    for rx, repl in subs:
        new = rx.sub(repl.replace("\\", "/"), new)
    if "/opt/python/" in new:
        left = sorted(set(re.findall(r'/opt/python/[^;"\s)]*', new)))
        sys.exit(f"build_interfaces: unknown /opt/python path(s) in {path}: {left}")
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)
    fixed += 1
if fixed:
    print(f"build_interfaces: pointed {fixed} exported cmake file(s) at {pyinc} and {npinc}")
PY

# 6. Configure, build, install into the venv prefix: the Python package lands in the venv's
#    site-packages, the libraries in $VENV/lib (put on LD_LIBRARY_PATH at interpreter start by the
#    wheels' ros_wheels_bootstrapper.pth, like the wheels' own message libraries; no RPATH needed),
#    share/ and the ament index under $VENV/share.
BUILD_DIR=${BUILD_DIR:-$REPO/build/interfaces/$PKG-$(printf '%s' "$VENV" | sha256sum | cut -c1-8)}
rm -rf "$BUILD_DIR"
echo "build_interfaces: building $PKG into $VENV (log: $BUILD_DIR/build.log)"
mkdir -p "$BUILD_DIR"
build() {
  # only this venv: ignore any sourced ROS environment
  env -u PYTHONPATH -u CMAKE_PREFIX_PATH -u COLCON_PREFIX_PATH -u _ROS_WHEELS_BOOTSTRAP_COMPLETE \
    VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" "$@"
}
if ! {
  build "$CMAKE" -S "$SRC" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" -DPython3_FIND_VIRTUALENV=ONLY \
  && build "$CMAKE" --build "$BUILD_DIR" -j "$JOBS" \
  && build "$CMAKE" --install "$BUILD_DIR"
} > "$BUILD_DIR/build.log" 2>&1; then
  tail -40 "$BUILD_DIR/build.log" >&2
  echo "build_interfaces: build of $PKG failed, full log in $BUILD_DIR/build.log" >&2
  exit 1
fi

# 7. Check it works from the venv's python with a clean environment, then stamp.
if ! imports_ok; then
  echo "build_interfaces: $PKG installed but does not import in $PY" >&2
  exit 1
fi
echo "$HASH" > "$STAMP"
rm -rf "$BUILD_DIR"
echo "build_interfaces: $PKG built and installed into $VENV in $(( $(date +%s) - t0 )) s"
