#!/usr/bin/env bash
# Install edgevos on a Jetson with a bare JetPack 6 (L4T r36, Ubuntu 22.04).
#
# Usage: jetson/setup.sh            (from a clone of the repository; sudo is used for apt)
# Environment: VENV (default <repo>/.venv), SKIP_APT=1 to skip the apt step.
#
# TensorRT's Python bindings (python3-libnvinfer) and GStreamer's (python3-gi) come from
# JetPack / apt, not pip: the venv is created with --system-site-packages to see them.
# torch is not installed: a Jetson runs exported bundles (ONNX Runtime / TensorRT).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

if [ ! -f /etc/nv_tegra_release ]; then
  echo "warning: /etc/nv_tegra_release not found: this does not look like a Jetson; continuing anyway" >&2
else
  echo "L4T: $(head -n 1 /etc/nv_tegra_release)"
fi

if [ "${SKIP_APT:-0}" != "1" ]; then
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends \
    python3-venv python3-pip python3-dev \
    python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
    libgirepository1.0-dev libcairo2-dev pkg-config
  if ! dpkg -s python3-libnvinfer >/dev/null 2>&1; then
    echo "python3-libnvinfer (TensorRT Python) is not installed: 'sudo apt-get install nvidia-jetpack' installs it" >&2
  fi
fi

python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install -e "${REPO}[gst,trt,plot]"

echo
"$VENV/bin/python" - <<'PY'
import importlib
for name in ("tensorrt", "gi", "onnxruntime"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:12s} {getattr(mod, '__version__', 'ok')}")
    except Exception as exc:  # report, do not fail: doctor says the rest
        print(f"{name:12s} missing ({exc})")
PY
"$VENV/bin/edgevos" doctor || true

cat <<MSG

Installed into $VENV.  Next:
  source $VENV/bin/activate
  sudo nvpmodel -q                  # current power mode; 'sudo nvpmodel -m 0' = the board's maximum mode
  sudo jetson_clocks                # pin clocks at their maximum before benchmarking
  edgevos build BUNDLE --precision int8          # TensorRT engines (or jetson/build_engines.sh BUNDLE int8)
  edgevos bench --source test:// --backend tensorrt,onnxruntime --precision int8,best,fp16,fp32 --out runs/bench
MSG
