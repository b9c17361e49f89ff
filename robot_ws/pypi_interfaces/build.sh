#!/usr/bin/env bash
# Builds the message packages PyPI's ROS 2 Jazzy wheels lack (tf2_msgs: TFMessage) into a
# virtualenv with rosidl, from those wheels, with the system's cmake and C/C++ compiler.
# Usage: robot_ws/pypi_interfaces/build.sh VENV   (the Makefile runs it for .venv)
# Libraries go to VENV/lib (on LD_LIBRARY_PATH through the ros wheels' bootstrapper), the
# Python package to VENV's site-packages; ~15 s on two cores.
set -euo pipefail
VENV=$(cd "${1:?usage: build.sh VENV}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
export PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV"
for package in tf2_msgs; do
  if ! cmake -S "$HERE/$package" -B "$BUILD/$package" -DCMAKE_PREFIX_PATH="$VENV" \
      -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
      -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF > "$BUILD/$package.log" 2>&1 \
    || ! make -C "$BUILD/$package" -j2 >> "$BUILD/$package.log" 2>&1 \
    || ! make -C "$BUILD/$package" install >> "$BUILD/$package.log" 2>&1; then
    tail -30 "$BUILD/$package.log" >&2
    echo "build.sh: building $package failed (log above)" >&2
    exit 1
  fi
done
"$VENV/bin/python" -c 'from tf2_msgs.msg import TFMessage; from rclpy.type_support import check_for_type_support; check_for_type_support(TFMessage)'
echo "built tf2_msgs into $VENV"
