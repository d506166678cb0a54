#!/usr/bin/env bash
# Build TensorRT engines for every stage of an edgevos bundle with trtexec (TensorRT 10.x, JetPack 6).
#
# Usage: jetson/build_engines.sh BUNDLE_DIR [int8|fp16|best] [DLA_CORE]
#   int8  the bundle's int8-trt Q/DQ ONNX as a strongly typed network (--stronglyTyped):
#         the Q/DQ nodes decide which layers run INT8 (export with --precision int8-trt); the
#         other layers run FP16 from the int8-trt-f16 graphs where the bundle has them
#         (exported with --trt-float fp16), else FP32; TRT_FLOAT=fp16|fp32 insists on one
#   fp16  the fp32 ONNX with the FP16 flag
#   best  the Q/DQ ONNX, weakly typed, INT8 + FP16 flags
#   A stage whose int8-trt ONNX holds no Q/DQ node (kept float) builds FP16 under int8 and best.
#   DLA_CORE  build FP16 for that DLA core with GPU fallback (Orin AGX: 0 or 1; Orin NX 16GB: 0 or 1;
#             Orin NX 8GB: 0; Orin Nano has none); only with fp16 (TensorRT 10 keeps Q/DQ layers off the DLA)
# Needs TensorRT 10 (JetPack 6.1 / 6.2). Environment: TRTEXEC (default /usr/src/tensorrt/bin/trtexec),
# WORKSPACE_MB (default 1024). Engines are named <stage>.<precision>.trt<version>.<device>.<H>x<W>.engine
# (<device> = compute capability and SM count, e.g. sm87x16) inside the bundle, with a timing cache
# and per-engine layer information; 'edgevos build BUNDLE --register' then adds them to the manifest.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=trtexec_common.sh
source "$HERE/trtexec_common.sh"
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
BUNDLE="$1"
PRECISION="${2:-int8}"
DLA="${3:-}"
WORKSPACE_MB="${WORKSPACE_MB:-1024}"

TRT_FLOAT="${TRT_FLOAT:-}"
case "$TRT_FLOAT" in
  fp16) INT8_SOURCE="int8-trt-f16" ;;
  fp32) INT8_SOURCE="int8-trt" ;;
  "") INT8_SOURCE="int8-trt-f16,int8-trt" ;;
  *) echo "TRT_FLOAT '$TRT_FLOAT' is unknown: use fp16 or fp32" >&2; exit 2 ;;
esac
case "$PRECISION" in
  int8) SOURCE="$INT8_SOURCE" ;;
  fp16) SOURCE="fp32" ;;
  best) SOURCE="int8-trt" ;;
  *) echo "precision '$PRECISION' is unknown: use int8, fp16 or best" >&2; exit 2 ;;
esac
if [ -n "$DLA" ] && ! [[ "$DLA" =~ ^[0-9]+$ ]]; then
  echo "DLA core '$DLA' must be a number (0 or 1)" >&2
  exit 2
fi
if [ -n "$DLA" ] && [ "$PRECISION" != "fp16" ]; then
  echo "DLA core $DLA with precision '$PRECISION': TensorRT 10 runs Q/DQ layers of a DLA build on the GPU; DLA engines are built FP16: use '$0 $BUNDLE fp16 $DLA'" >&2
  exit 2
fi
find_trtexec /usr/src/tensorrt/bin/trtexec
check_bundle "$BUNDLE"

trtinfo() {
  python3 "$HERE/trtinfo.py" "$@"
}

check_trt_version 10
GPU="$(trtinfo identity)"

# "<stage> <onnx file> <H>x<W> <qdq|float>" per stage, from the manifest and each graph
STAGES="$(python3 - "$BUNDLE" "$SOURCE" "$HERE" <<'PY'
import json, os, sys
bundle, src, here = sys.argv[1:4]
sys.path.insert(0, here)
import trtinfo
m = json.load(open(os.path.join(bundle, "manifest.json")))
h, w = m["input_size"]
# the first of the comma-separated precisions every stage has a file for
srcs = src.split(",")
src = next((p for p in srcs if all(p in s["files"] for s in m["stages"])), srcs[0])
for s in m["stages"]:
    f = s["files"].get(src)
    if f is None:
        hint = "--precision int8-trt --trt-float fp16" if src == "int8-trt-f16" else f"--precision {src}"
        sys.exit(f"stage {s['name']} has no {src} ONNX: export the bundle with {hint}")
    kind = "qdq" if trtinfo.has_qdq(os.path.join(bundle, f)) else "float"
    print(s["name"], f, f"{h}x{w}", kind)
PY
)"

TAG="$PRECISION"
if [ -n "$DLA" ]; then
  TAG="$PRECISION-dla$DLA"
fi
CACHE="$BUNDLE/timing.trt${TRT_VER}.${GPU}.cache"
echo "TensorRT $TRT_VER on $GPU: $TAG engines from the $SOURCE ONNX; timing cache $CACHE"

while read -r stage onnx size kind; do
  [ -n "$stage" ] || continue
  FLAGS=()
  if [ -n "$DLA" ]; then
    FLAGS+=(--fp16 "--useDLACore=$DLA" --allowGPUFallback)
  elif [ "$kind" = "qdq" ] && [ "$PRECISION" = "int8" ]; then
    FLAGS+=(--stronglyTyped)
  elif [ "$kind" = "qdq" ] && [ "$PRECISION" = "best" ]; then
    FLAGS+=(--int8 --fp16)
  else
    FLAGS+=(--fp16)  # fp16, or a stage without Q/DQ nodes: never --int8 without scales
  fi
  engine="$BUNDLE/$stage.$TAG.trt$TRT_VER.$GPU.$size.engine"
  echo "building $stage ($TAG, $kind graph: ${FLAGS[*]}) -> $(basename "$engine")"
  "$TRTEXEC" \
    --onnx="$BUNDLE/$onnx" \
    --saveEngine="$engine" \
    --memPoolSize="workspace:${WORKSPACE_MB}M" \
    "${FLAGS[@]}" \
    --timingCacheFile="$CACHE" \
    --profilingVerbosity=detailed \
    --exportLayerInfo="$engine.layers.json" \
    --skipInference
done <<< "$STAGES"

register_engines "$BUNDLE"
