#!/usr/bin/env bash
# Check the edgevos chain on a Jetson in one run and print a pass/fail table.
#
# Usage: jetson/check.sh [BUNDLE_DIR]
#   board       /etc/nv_tegra_release: L4T r36.4 or later (JetPack 6.1 / 6.2)
#   TensorRT    version 10 or later (Python bindings, else libnvinfer)
#   CUDA        the CUDA 12 runtime loads through ctypes and the driver supports it (trtinfo.py)
#   GPU         the device identity engines are keyed on (e.g. sm87x16)
#   GStreamer   NVMM elements: nvvidconv and nvv4l2decoder needed; nvv4l2h264enc (NVENC),
#               nvarguscamerasrc (CSI cameras) and nv3dsink (display://) reported when missing
#   engines     with BUNDLE_DIR: the bundle's smallest stage built FP16 and run by trtexec, and
#               built by edgevos' Python builder, both into a temporary folder (the bundle is
#               not changed)
#   doctor      'edgevos doctor' runs
# Exit status: 0 when no check failed, 1 when one did, 2 on bad arguments.
# Environment: PYTHON (default python3), EDGEVOS (default edgevos), TRTEXEC (default
#   /usr/src/tensorrt/bin/trtexec, else trtexec on PATH), GST_INSPECT (default gst-inspect-1.0),
#   NV_TEGRA_RELEASE (default /etc/nv_tegra_release), CHECK_LOG (folder for each check's full
#   output; default a new temporary folder).

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
EDGEVOS="${EDGEVOS:-edgevos}"
GST_INSPECT="${GST_INSPECT:-gst-inspect-1.0}"
NV_TEGRA_RELEASE="${NV_TEGRA_RELEASE:-/etc/nv_tegra_release}"
MIN_TRT_MAJOR=10
CUDA_MAJOR=12

# ------------------------------------------------------------------ parsing (each reads one check's output)

# '# R36 (release), REVISION: 4.3, GCID: ...' -> 36.4.3 (nothing when the text is not an L4T release line)
l4t_version() {
  local re='R([0-9]+)[[:space:]]*\(release\),[[:space:]]*REVISION:[[:space:]]*([0-9.]+)'
  if [[ "$1" =~ $re ]]; then
    local rev="${BASH_REMATCH[2]}"
    echo "${BASH_REMATCH[1]}.${rev%.}"
  fi
}

# 0 when L4T version $1 is r36.4 or later (JetPack 6.1+)
l4t_ok() {
  local major minor
  IFS=. read -r major minor _ <<< "$1"
  [[ "$major" =~ ^[0-9]+$ ]] || return 1
  [[ "$minor" =~ ^[0-9]+$ ]] || minor=0
  [ "$major" -gt 36 ] || { [ "$major" -eq 36 ] && [ "$minor" -ge 4 ]; }
}

# 0 when TensorRT version $1 ('10.3.0') has major >= MIN_TRT_MAJOR
trt_ok() {
  local major="${1%%.*}"
  [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge "$MIN_TRT_MAJOR" ]
}

# 0 when 'runtime R driver D' (trtinfo.py cuda) has a CUDA 12 runtime the driver supports
cuda_ok() {
  local re='^runtime ([0-9]+)\.([0-9]+) driver ([0-9]+)\.([0-9]+)$'
  [[ "$1" =~ $re ]] || return 1
  local rmaj="${BASH_REMATCH[1]}" rmin="${BASH_REMATCH[2]}" dmaj="${BASH_REMATCH[3]}" dmin="${BASH_REMATCH[4]}"
  [ "$rmaj" -eq "$CUDA_MAJOR" ] || return 1
  [ $((dmaj * 100 + dmin)) -ge $((rmaj * 100 + rmin)) ]
}

# 0 when $1 is a device identity (sm87x16)
identity_ok() {
  [[ "$1" =~ ^sm[0-9]+x[0-9]+$ ]]
}

# trtexec's log ($1) -> 'mean X ms' when it passed (exit 0), nothing and exit 1 when it did not
trtexec_result() {
  local log="$1" re='GPU Compute Time: .*mean = ([0-9.]+) ms'
  grep -q '&&&& PASSED' <<< "$log" || return 1
  local line
  line="$(grep -m1 'GPU Compute Time:' <<< "$log")"
  if [[ "$line" =~ $re ]]; then
    echo "GPU compute mean ${BASH_REMATCH[1]} ms"
  else
    echo "passed"
  fi
}

# ------------------------------------------------------------------ the table
NAMES=()
STATES=()
DETAILS=()

record() {  # record NAME PASS|WARN|FAIL|SKIP DETAIL
  NAMES+=("$1")
  STATES+=("$2")
  DETAILS+=("$3")
}

print_table() {
  local i width=5
  for i in "${!NAMES[@]}"; do
    [ "${#NAMES[$i]}" -gt "$width" ] && width="${#NAMES[$i]}"
  done
  printf "%-${width}s  %-5s  %s\n" "check" "state" "detail"
  for i in "${!NAMES[@]}"; do
    printf "%-${width}s  %-5s  %s\n" "${NAMES[$i]}" "${STATES[$i]}" "${DETAILS[$i]}"
  done
}

# exit status of the whole run: 1 when a check failed
verdict() {
  local s
  for s in "${STATES[@]}"; do
    [ "$s" = "FAIL" ] && return 1
  done
  return 0
}

# ------------------------------------------------------------------ checks
check_board() {
  if [ ! -r "$NV_TEGRA_RELEASE" ]; then
    record "board" FAIL "not a Jetson ($NV_TEGRA_RELEASE missing): run this on the board, or in a container started with --runtime nvidia"
    return
  fi
  local text l4t jp=""
  text="$(head -n1 "$NV_TEGRA_RELEASE")"
  l4t="$(l4t_version "$text")"
  if command -v dpkg-query >/dev/null 2>&1; then
    jp="$(dpkg-query -W -f='${Version}' nvidia-jetpack 2>/dev/null | cut -d- -f1 | cut -d+ -f1)"
  fi
  if [ -z "$l4t" ]; then
    record "board" FAIL "cannot read the L4T release from '$text' ($NV_TEGRA_RELEASE)"
  elif l4t_ok "$l4t"; then
    record "board" PASS "L4T $l4t${jp:+, JetPack $jp}"
  else
    record "board" FAIL "L4T $l4t${jp:+ (JetPack $jp)} is older than JetPack 6.1 (L4T 36.4; JetPack 6.0 ships TensorRT 8.6): flash JetPack 6.1 or 6.2"
  fi
}

check_tensorrt() {
  TRT_VER="$("$PYTHON" "$HERE/trtinfo.py" trt-version 2>"$LOG/tensorrt.err")"
  if [ -z "$TRT_VER" ] || [ "$TRT_VER" = "unknown" ]; then
    TRT_VER=""
    record "TensorRT" FAIL "not found by $PYTHON (no tensorrt module, no libnvinfer): 'sudo apt-get install nvidia-jetpack'; a venv needs --system-site-packages"
  elif trt_ok "$TRT_VER"; then
    record "TensorRT" PASS "$TRT_VER"
  else
    record "TensorRT" FAIL "$TRT_VER: edgevos needs TensorRT $MIN_TRT_MAJOR.x: flash JetPack 6.1 or 6.2 (TensorRT 10.3)"
    TRT_VER=""
  fi
}

check_cuda() {
  local text
  if ! text="$("$PYTHON" "$HERE/trtinfo.py" cuda 2>"$LOG/cuda.err")"; then
    record "CUDA" FAIL "$(head -n1 "$LOG/cuda.err")"
  elif cuda_ok "$text"; then
    record "CUDA" PASS "$text"
  else
    record "CUDA" FAIL "$text: edgevos needs the CUDA $CUDA_MAJOR runtime of JetPack 6 and a driver at least as new (check LD_LIBRARY_PATH for another libcudart)"
  fi
  local ident
  ident="$("$PYTHON" "$HERE/trtinfo.py" identity 2>>"$LOG/cuda.err")"
  if identity_ok "$ident"; then
    record "GPU" PASS "$ident (engines are keyed on it)"
  else
    record "GPU" FAIL "no CUDA device answered ('${ident:-nothing}'): check /dev/nvgpu, /dev/nvmap and that the user is in the 'video' group"
  fi
}

check_gstreamer() {
  if ! command -v "$GST_INSPECT" >/dev/null 2>&1; then
    record "GStreamer" FAIL "$GST_INSPECT not found: 'sudo apt-get install gstreamer1.0-tools' (jetson/setup.sh installs it)"
    return
  fi
  local el missing=() optional=() why
  for el in nvvidconv nvv4l2decoder; do
    "$GST_INSPECT" "$el" >>"$LOG/gst.log" 2>&1 || missing+=("$el")
  done
  for el in nvv4l2h264enc nvarguscamerasrc nv3dsink; do
    "$GST_INSPECT" "$el" >>"$LOG/gst.log" 2>&1 || optional+=("$el")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    record "GStreamer" FAIL "missing ${missing[*]}: 'sudo apt-get install nvidia-l4t-gstreamer' (an L4T container needs --runtime nvidia)"
  elif [ "${#optional[@]}" -gt 0 ]; then
    why=""
    for el in "${optional[@]}"; do
      case "$el" in
        nvv4l2h264enc) why+="${why:+; }no nvv4l2h264enc: video outputs encode with x264enc" ;;
        nvarguscamerasrc) why+="${why:+; }no nvarguscamerasrc: no CSI cameras (csi://)" ;;
        nv3dsink) why+="${why:+; }no nv3dsink: display:// uses another video sink" ;;
      esac
    done
    record "GStreamer" WARN "NVMM decode and convert present; $why"
  else
    record "GStreamer" PASS "nvvidconv, nvv4l2decoder, nvv4l2h264enc, nvarguscamerasrc, nv3dsink"
  fi
}

# the bundle's stage with the smallest fp32 ONNX: 'NAME FILE'
smallest_stage() {
  "$PYTHON" - "$1" <<'PY'
import json, os, sys
root = sys.argv[1]
stages = json.load(open(os.path.join(root, "manifest.json")))["stages"]
files = [(os.path.getsize(os.path.join(root, s["files"]["fp32"])), s["name"], s["files"]["fp32"])
         for s in stages if "fp32" in s.get("files", {})]
if not files:
    sys.exit("the bundle has no fp32 ONNX files: export it with --precision fp32")
size, name, f = min(files)
print(name, f)
PY
}

check_engines() {
  local bundle="$1"
  if [ -z "$bundle" ]; then
    record "engine trtexec" SKIP "no bundle given: 'jetson/check.sh BUNDLE_DIR' builds one engine"
    record "engine Python" SKIP "no bundle given"
    return
  fi
  if [ -z "$TRT_VER" ]; then
    record "engine trtexec" SKIP "needs TensorRT $MIN_TRT_MAJOR (see above)"
    record "engine Python" SKIP "needs TensorRT $MIN_TRT_MAJOR (see above)"
    return
  fi
  local pick stage onnx out
  if ! pick="$(smallest_stage "$bundle" 2>"$LOG/bundle.err")"; then
    record "engine trtexec" FAIL "$bundle: $(tail -n1 "$LOG/bundle.err")"
    record "engine Python" SKIP "no stage to build"
    return
  fi
  read -r stage onnx <<< "$pick"
  out="$(mktemp -d "${TMPDIR:-/tmp}/edgevos-check-engine.XXXXXX")"
  local trtexec="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"
  [ -x "$trtexec" ] || trtexec="$(command -v trtexec || true)"
  if [ -z "$trtexec" ]; then
    record "engine trtexec" FAIL "trtexec not found: it is /usr/src/tensorrt/bin/trtexec with JetPack (or set TRTEXEC)"
  else
    local result
    "$trtexec" --onnx="$bundle/$onnx" --saveEngine="$out/$stage.fp16.engine" --fp16 \
      --memPoolSize=workspace:256M --warmUp=200 --iterations=20 --duration=0 >"$LOG/trtexec.log" 2>&1
    local rc=$?
    if [ "$rc" -eq 0 ] && result="$(trtexec_result "$(cat "$LOG/trtexec.log")")"; then
      record "engine trtexec" PASS "$stage FP16: $result"
    else
      record "engine trtexec" FAIL "$stage FP16: trtexec exit $rc: see $LOG/trtexec.log"
    fi
  fi
  if "$PYTHON" - "$bundle/$onnx" "$out/$stage.fp16.py.engine" >"$LOG/builder.log" 2>&1 <<'PY'
import sys
from edgevos.export.tensorrt import BuildOptions, build_engine
info = build_engine(sys.argv[1], sys.argv[2], BuildOptions("fp16", workspace_mb=256))
print("layers", " ".join(f"{k}={v}" for k, v in sorted(info.get("layers", {}).items())))
PY
  then
    record "engine Python" PASS "$stage FP16: $(tail -n1 "$LOG/builder.log")"
  else
    record "engine Python" FAIL "$stage FP16: $(tail -n1 "$LOG/builder.log")"
  fi
  rm -rf "$out"
}

check_doctor() {
  if ! command -v "$EDGEVOS" >/dev/null 2>&1; then
    record "doctor" FAIL "$EDGEVOS not found: install edgevos (jetson/setup.sh) and activate its venv"
    return
  fi
  if "$EDGEVOS" doctor >"$LOG/doctor.log" 2>&1; then
    record "doctor" PASS "full report in $LOG/doctor.log"
  else
    record "doctor" FAIL "'$EDGEVOS doctor' failed: $(tail -n1 "$LOG/doctor.log")"
  fi
}

main() {
  case "${1:-}" in
    -h|--help) sed -n '2,/^$/p' "$0" | sed -e '/^$/d' -e 's/^# \{0,1\}//'; return 2 ;;
  esac
  if [ $# -gt 1 ]; then
    echo "check.sh takes at most one argument (a bundle directory), got $#: $*" >&2
    return 2
  fi
  local bundle="${1:-}"
  if [ -n "$bundle" ] && [ ! -f "$bundle/manifest.json" ]; then
    echo "$bundle is not an edgevos bundle (no manifest.json): export one with 'edgevos export' or leave it out" >&2
    return 2
  fi
  LOG="${CHECK_LOG:-$(mktemp -d "${TMPDIR:-/tmp}/edgevos-check.XXXXXX")}"
  mkdir -p "$LOG"
  TRT_VER=""
  check_board
  check_tensorrt
  check_cuda
  check_gstreamer
  check_engines "$bundle"
  check_doctor
  print_table
  echo "logs: $LOG"
  if verdict; then
    echo "result: PASS"
    return 0
  fi
  echo "result: FAIL"
  return 1
}

if [ -z "${EDGEVOS_CHECK_LIB:-}" ]; then
  main "$@"
  exit $?
fi
