#!/usr/bin/env bash
# Build TensorRT engines for every stage of an edgevos bundle with trtexec (TensorRT 10.x, JetPack 6).
#
# Usage: jetson/build_engines.sh BUNDLE_DIR [int8|fp16|best] [DLA_CORE]
#   int8  the bundle's int8-trt Q/DQ ONNX as a strongly typed network (--stronglyTyped):
#         the Q/DQ nodes decide which layers run INT8 (export with --precision int8-trt)
#   fp16  the fp32 ONNX with the FP16 flag
#   best  the Q/DQ ONNX, weakly typed, INT8 + FP16 flags
#   DLA_CORE  build for that DLA core (Orin AGX: 0 or 1; Orin NX: 0 or 1; Orin Nano has none),
#             weakly typed with GPU fallback
# Environment: TRTEXEC (default /usr/src/tensorrt/bin/trtexec), WORKSPACE_MB (default 1024).
# Engines are named <stage>.<precision>.trt<version>.<gpu>.<H>x<W>.engine inside the bundle, with a
# timing cache next to them; 'edgevos build BUNDLE --register' then adds them to the manifest.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
BUNDLE="$1"
PRECISION="${2:-int8}"
DLA="${3:-}"
WORKSPACE_MB="${WORKSPACE_MB:-1024}"
TRTEXEC="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"

case "$PRECISION" in
  int8) SOURCE="int8-trt" ;;
  fp16) SOURCE="fp32" ;;
  best) SOURCE="int8-trt" ;;
  *) echo "precision '$PRECISION' is unknown: use int8, fp16 or best" >&2; exit 2 ;;
esac
if [ -n "$DLA" ] && ! [[ "$DLA" =~ ^[0-9]+$ ]]; then
  echo "DLA core '$DLA' must be a number (0 or 1)" >&2
  exit 2
fi
if [ ! -x "$TRTEXEC" ]; then
  TRTEXEC="$(command -v trtexec || true)"
fi
if [ -z "$TRTEXEC" ]; then
  echo "trtexec not found: install TensorRT (JetPack) or set TRTEXEC=/path/to/trtexec" >&2
  exit 1
fi
if [ ! -f "$BUNDLE/manifest.json" ]; then
  echo "$BUNDLE is not an edgevos bundle (no manifest.json): export one with 'edgevos export'" >&2
  exit 1
fi

slug() {
  tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//'
}

trt_version() {
  local v=""
  v="$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)"
  if [ -z "$v" ]; then
    v="$(dpkg-query -W -f='${Version}' libnvinfer10 2>/dev/null || true)"
  fi
  if [ -z "$v" ]; then
    echo unknown
  else
    echo "$v" | grep -oE '^[0-9]+(\.[0-9]+){0,2}'
  fi
}

gpu_name() {
  if [ -f /proc/device-tree/model ]; then
    tr -d '\000' < /proc/device-tree/model
  elif command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1
  else
    echo unknown
  fi
}

# "<stage> <onnx file> <H>x<W>" per stage, from the manifest (python3 ships with JetPack)
STAGES="$(python3 - "$BUNDLE/manifest.json" "$SOURCE" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
src = sys.argv[2]
h, w = m["input_size"]
for s in m["stages"]:
    f = s["files"].get(src)
    if f is None:
        sys.exit(f"stage {s['name']} has no {src} ONNX: export the bundle with --precision {src}")
    print(s["name"], f, f"{h}x{w}")
PY
)"

TRT_VER="$(trt_version)"
GPU="$(gpu_name | slug)"
if [ -z "$GPU" ]; then
  GPU=unknown
fi
TAG="$PRECISION"
FLAGS=()
if [ -n "$DLA" ]; then
  TAG="$PRECISION-dla$DLA"
  if [ "$PRECISION" != "fp16" ]; then
    FLAGS+=(--int8)
  fi
  FLAGS+=(--fp16 "--useDLACore=$DLA" --allowGPUFallback)
elif [ "$PRECISION" = "int8" ]; then
  FLAGS+=(--stronglyTyped)
elif [ "$PRECISION" = "best" ]; then
  FLAGS+=(--int8 --fp16)
else
  FLAGS+=(--fp16)
fi
CACHE="$BUNDLE/timing.trt${TRT_VER}.${GPU}.cache"
echo "TensorRT $TRT_VER on $GPU: $TAG engines from the $SOURCE ONNX; timing cache $CACHE"

while read -r stage onnx size; do
  [ -n "$stage" ] || continue
  engine="$BUNDLE/$stage.$TAG.trt$TRT_VER.$GPU.$size.engine"
  echo "building $stage ($TAG) -> $(basename "$engine")"
  "$TRTEXEC" \
    --onnx="$BUNDLE/$onnx" \
    --saveEngine="$engine" \
    --memPoolSize="workspace:${WORKSPACE_MB}M" \
    "${FLAGS[@]}" \
    --timingCacheFile="$CACHE" \
    --skipInference
done <<< "$STAGES"

if command -v edgevos >/dev/null 2>&1; then
  edgevos build "$BUNDLE" --register
else
  echo "edgevos not installed: run 'edgevos build $BUNDLE --register' to add the engines to the manifest"
fi
echo "engines written to $BUNDLE"
