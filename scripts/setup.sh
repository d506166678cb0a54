#!/usr/bin/env bash
# Set up a development/demo environment on a fresh Debian/Ubuntu machine:
# OS packages for GStreamer (apt, when root; otherwise prints what to install),
# a virtualenv in .venv, and the package with all extras.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EDGEVOS_VENV:-.venv}
PY=${PYTHON:-python3}

APT_PKGS="gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
gstreamer1.0-x gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 xvfb libgirepository1.0-dev libcairo2-dev pkg-config"

missing=""
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[setup] installing OS packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "[setup] GStreamer OS packages missing; run as root:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    echo "[setup] continuing without them (GStreamer I/O will be unavailable)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.edgevos-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip
  extras="torch,export,train,plot,dev"
  if pkg-config --exists gobject-introspection-1.0 2>/dev/null; then extras="$extras,gst"; fi
  echo "[setup] pip install -e .[$extras]"
  "$VENV/bin/pip" install -q -e ".[$extras]"
  touch "$stamp"
fi
echo "[setup] ready: $VENV/bin/edgevos"
