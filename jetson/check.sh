#!/usr/bin/env bash
# Check edgevos' TensorRT path on a Jetson in one run, print a table and write a report.
#
# Usage: jetson/check.sh [BUNDLE_DIR] [options]      (jetson/check.sh --help lists the options)
#   environment  L4T r36.4+ (JetPack 6.1 / 6.2), power mode and jetson_clocks, TensorRT 10, the CUDA 12
#                runtime and its driver, the GPU identity engines are keyed on, GStreamer NVMM elements,
#                edgevos doctor
#   engines      with BUNDLE_DIR: fp16, int8 (int8-trt), int8-f16 (int8-trt-f16) and best, where the bundle
#                has their ONNX (--dla N adds fp16 on DLA core N), built by the Python builder and by the
#                generated trtexec script into copies of the bundle under the output folder
#   accuracy     per stage: SNR and max |diff| of every output against ONNX Runtime FP32 and against the
#                graph the engine was built from, on feeds recorded from the clip (--clip, default test://1);
#                end to end: mask IoU against ONNX Runtime on the clip
#   speed        each stage's median time on the TensorRT backend; trtexec's GPU compute time per engine
#   power        a 300-frame run (--frames, --source) with tegrastats logged and summarised
# Writes OUT/check.json (attach it to a bug report), OUT/check.txt, OUT/tegrastats.log and OUT/logs/.
# Exit status: 0 when no check failed (WARN allowed), 1 when one did, 2 on bad arguments or no edgevos.
# Environment: PYTHON (default python3: the venv with edgevos and, through --system-site-packages,
#   TensorRT), CHECK_OUT (output folder, default ./edgevos-check-<time>), TRTEXEC (default
#   /usr/src/tensorrt/bin/trtexec, else trtexec on PATH), GST_INSPECT (default gst-inspect-1.0),
#   NV_TEGRA_RELEASE (default /etc/nv_tegra_release).
# The checks are edgevos.jetson.check (also 'edgevos check'); this script finds the Python that runs them.

PYTHON="${PYTHON:-python3}"

case "${1:-}" in
  -h|--help)
    sed -n '2,/^$/p' "$0" | sed -e '/^$/d' -e 's/^# \{0,1\}//'
    echo
    if "$PYTHON" -c 'import edgevos' >/dev/null 2>&1; then
      "$PYTHON" -m edgevos.jetson.check --help
    fi
    exit 0
    ;;
esac

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "check.sh: $PYTHON not found: set PYTHON to the Python of edgevos' venv (jetson/setup.sh makes one)" >&2
  exit 2
fi
if ! err="$("$PYTHON" -c 'import edgevos.jetson.check' 2>&1)"; then
  echo "check.sh: edgevos is not importable by $PYTHON (${err##*$'\n'}): run jetson/setup.sh and" \
       "'source .venv/bin/activate', or set PYTHON=/path/to/venv/bin/python" >&2
  exit 2
fi
exec "$PYTHON" -m edgevos.jetson.check "$@"
