#!/usr/bin/env bash
# Shell functions of the trtexec engine builds, shared by jetson/build_engines.sh (which sources
# this file) and the scripts 'edgevos build --script-only' writes (which embed it): find trtexec,
# check the bundle and the TensorRT version, register the engines. trtinfo (the TensorRT version
# and device identity from jetson/trtinfo.py) is defined by the script.

# find_trtexec DEFAULT: TRTEXEC (default DEFAULT) where it is executable, else trtexec on PATH
find_trtexec() {
  TRTEXEC="${TRTEXEC:-$1}"
  if [ ! -x "$TRTEXEC" ]; then
    TRTEXEC="$(command -v trtexec || true)"
  fi
  if [ -z "$TRTEXEC" ]; then
    echo "trtexec not found: install TensorRT (JetPack) or set TRTEXEC=/path/to/trtexec" >&2
    exit 1
  fi
}

# check_bundle DIR: exits unless DIR holds an edgevos bundle
check_bundle() {
  if [ ! -f "$1/manifest.json" ]; then
    echo "$1 is not an edgevos bundle (no manifest.json): export one with 'edgevos export'" >&2
    exit 1
  fi
}

# check_trt_version MIN_MAJOR: sets TRT_VER; exits when TensorRT is older than MIN_MAJOR.x
check_trt_version() {
  TRT_VER="$(trtinfo trt-version)"
  local major="${TRT_VER%%.*}"
  if ! [[ "$major" =~ ^[0-9]+$ ]] || [ "$major" -lt "$1" ]; then
    echo "TensorRT $TRT_VER: these engines need TensorRT $1.x (strongly typed Q/DQ networks); JetPack 6.0 ships 8.6: flash JetPack 6.1 or 6.2 (TensorRT 10.3)" >&2
    exit 1
  fi
}

# register_engines DIR: add the engines built into DIR to its manifest ('edgevos build --register')
register_engines() {
  if command -v edgevos >/dev/null 2>&1; then
    edgevos build "$1" --register
  else
    echo "edgevos not installed: run 'edgevos build $1 --register' to add the engines to the manifest"
  fi
  echo "engines written to $1"
}
