"""``edgevos doctor``: what this machine has for edgevos.

Versions of the Python packages and system libraries edgevos uses, CPU model
and the instruction-set features that matter for INT8 (AVX2, AVX-512,
AVX-512 VNNI), memory, NVIDIA GPU presence, and on a Jetson the board model,
L4T / JetPack version, nvpmodel power mode and whether jetson_clocks is on.

Nothing here fails: anything missing reads "not installed" or "n/a".
:func:`collect` returns the same facts as a dict (the benchmarks record it).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

NOT_INSTALLED = "not installed"
NA = "n/a"

# (label, distributions to ask pip metadata for, module to import as a fallback)
PACKAGES = [
    ("numpy", ["numpy"], "numpy"),
    ("torch", ["torch"], None),
    ("onnx", ["onnx"], None),
    ("onnxruntime", ["onnxruntime", "onnxruntime-gpu", "onnxruntime-training"], "onnxruntime"),
    ("tensorrt", ["tensorrt", "tensorrt-lean", "tensorrt-cu12", "tensorrt_lean"], "tensorrt"),
    ("cuda-python", ["cuda-python", "cuda-bindings"], None),
    ("PyGObject", ["PyGObject", "pygobject"], "gi"),
    ("opencv", ["opencv-python-headless", "opencv-python", "opencv-contrib-python"], "cv2"),
    ("pillow", ["pillow", "Pillow"], None),
]
CPU_FLAGS = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"]
# L4T release -> JetPack, for when the nvidia-jetpack package is not installed
L4T_TO_JETPACK = {
    "36.4.7": "6.2.1", "36.4.4": "6.2.1", "36.4.3": "6.2", "36.4": "6.1", "36.3": "6.0", "36.2": "6.0 DP", "35.6": "5.1.4",
    "35.5": "5.1.3", "35.4": "5.1.2", "35.3": "5.1.1", "35.2": "5.1", "35.1": "5.0.2", "34.1": "5.0",
    "32.7.6": "4.6.6", "32.7.5": "4.6.5", "32.7.4": "4.6.4", "32.7.3": "4.6.3", "32.7.2": "4.6.2",
    "32.7.1": "4.6.1", "32.6": "4.6", "32.5": "4.5",
}


def _run(cmd, timeout: float = 5.0) -> Optional[str]:
    """stdout of a command, or None if it is missing, fails or hangs."""
    if not shutil.which(cmd[0]):
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    return (p.stdout or p.stderr).strip()


def _read(path, default=None) -> Optional[str]:
    try:
        return Path(path).read_text(errors="replace").strip("\x00 \n")
    except OSError:
        return default


def _dist_version(names) -> Optional[str]:
    from importlib import metadata

    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
        except Exception:  # pragma: no cover - broken metadata
            continue
    return None


def _module_version(module: str) -> Optional[str]:
    try:
        mod = __import__(module)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "") or "installed")


def packages() -> dict:
    out = {}
    for label, dists, module in PACKAGES:
        v = _dist_version(dists) or (module and _module_version(module))
        out[label] = v or NOT_INSTALLED
    return out


def onnxruntime_providers() -> list:
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except Exception:
        return []


def gstreamer() -> dict:
    """GStreamer version via PyGObject, else gst-launch-1.0 --version."""
    info = {"version": NOT_INSTALLED, "via": NA, "python_bindings": False}
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst

        Gst.init(None)
        info.update(version=".".join(str(x) for x in Gst.version()[:3]), via="gi", python_bindings=True)
        return info
    except Exception:
        pass
    text = _run(["gst-launch-1.0", "--version"])
    if text:
        m = re.search(r"GStreamer\s+(\d+\.\d+(?:\.\d+)?)", text)
        info.update(version=m.group(1) if m else text.splitlines()[0], via="gst-launch-1.0")
    return info


def torch_info() -> dict:
    """torch's build and CUDA availability (imports torch, which takes a second)."""
    if _dist_version(["torch"]) is None:
        return {"cuda": NA, "cuda_available": False}
    try:
        import torch

        return {"cuda": torch.version.cuda or NA, "cuda_available": bool(torch.cuda.is_available()),
                "threads": torch.get_num_threads()}
    except Exception as exc:
        return {"cuda": NA, "cuda_available": False, "error": f"import failed: {exc}"}


def parse_cpuinfo(text: str) -> dict:
    """CPU model and flags from /proc/cpuinfo text (x86 'flags', ARM 'Features')."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if model is None and key in ("model name", "hardware", "processor") and not val.strip().isdigit():
            model = val.strip() or None
        if key in ("flags", "features") and not flags:
            flags = set(val.split())
    return {"model": model, "flags": flags}


def cpu() -> dict:
    info = parse_cpuinfo(_read("/proc/cpuinfo", "") or "")
    model = info["model"] or platform.processor() or NA
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    out = {"model": model, "arch": platform.machine(), "logical_cores": os.cpu_count() or NA,
           "usable_cores": usable or NA}
    out["flags"] = {f: (f in info["flags"]) for f in CPU_FLAGS}
    if not info["flags"]:
        out["flags"] = {f: NA for f in CPU_FLAGS}
    return out


def parse_meminfo(text: str) -> dict:
    vals = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+)\s*kB", line)
        if m:
            vals[m.group(1)] = int(m.group(2)) * 1024
    gib = lambda k: round(vals[k] / 2**30, 2) if k in vals else NA  # noqa: E731
    return {"total_gib": gib("MemTotal"), "available_gib": gib("MemAvailable")}


def memory() -> dict:
    return parse_meminfo(_read("/proc/meminfo", "") or "")


def gpu() -> dict:
    devices = sorted(glob.glob("/dev/nvidia*")) + sorted(glob.glob("/dev/nvhost-ctrl*"))
    out = {"nvidia_smi": NA, "gpus": [], "device_nodes": devices}
    text = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if text:
        out["nvidia_smi"] = "ok"
        for line in text.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                out["gpus"].append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    out["present"] = bool(out["gpus"] or devices)
    return out


def parse_tegra_release(text: str) -> Optional[str]:
    """L4T version from /etc/nv_tegra_release ('# R36 (release), REVISION: 4.3, ...' -> '36.4.3')."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    if not m:
        return None
    return f"{m.group(1)}.{m.group(2)}"


def jetpack_for_l4t(l4t: Optional[str]) -> str:
    if not l4t:
        return NA
    parts = l4t.split(".")
    for n in (3, 2):
        key = ".".join(parts[:n])
        if key in L4T_TO_JETPACK:
            return L4T_TO_JETPACK[key]
    return NA


def parse_nvpmodel(text: Optional[str]) -> str:
    """Power mode from ``nvpmodel -q`` ('NV Power Mode: MAXN\\n0' -> 'MAXN (0)')."""
    if not text:
        return NA
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    ident = [ln.strip() for ln in text.splitlines() if ln.strip().isdigit()]
    if m:
        return f"{m.group(1)} ({ident[0]})" if ident else m.group(1)
    return text.splitlines()[0].strip()


def jetson_clocks_state(sys_root: str = "/sys") -> str:
    """'on' when every CPU's (and the GPU's, if readable) minimum frequency is
    pinned to its maximum, as jetson_clocks does; 'off' otherwise."""
    pairs = []
    for d in sorted(glob.glob(f"{sys_root}/devices/system/cpu/cpu[0-9]*/cpufreq")):
        lo, hi = _read(f"{d}/scaling_min_freq"), _read(f"{d}/scaling_max_freq")
        if lo and hi:
            pairs.append((lo, hi))
    gpu_devfreq = set(glob.glob(f"{sys_root}/devices/platform/*gpu*/devfreq/*") + glob.glob(f"{sys_root}/devices/gpu.0/devfreq/*")
                      + glob.glob(f"{sys_root}/class/devfreq/*gpu*"))  # Orin: /sys/class/devfreq/17000000.gpu
    seen = set()
    for d in sorted(gpu_devfreq):
        if os.path.realpath(d) in seen:  # one devfreq node reached by two of the paths
            continue
        seen.add(os.path.realpath(d))
        lo, hi = _read(f"{d}/min_freq"), _read(f"{d}/max_freq")
        if lo and hi:
            pairs.append((lo, hi))
    if not pairs:
        return NA
    return "on" if all(lo == hi for lo, hi in pairs) else "off"


def board_model(root: str = "/") -> str:
    """The board model from the device tree; in a container that masks /proc/device-tree,
    the /sys/firmware copy, else a note saying why it is missing."""
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        text = (_read(Path(root, rel), "") or "").replace("\x00", "").strip()
        if text:
            return text
    return "n/a (device tree not readable: in a container, the GPU identity below still keys engines)"


def tensorrt_rows() -> list:
    """(label, value) rows for TensorRT: its version (10.x needed) and the device identity engines are keyed on."""
    rows = []
    try:
        import tensorrt

        version = str(tensorrt.__version__)
    except Exception:
        version = None
    from edgevos.jetson.trtinfo import MIN_TRT_MAJOR, CudaError, CudaRuntime, identity_from, trt_major

    if version is None:
        rows.append(("TensorRT", "not importable (on a Jetson it comes with JetPack 6.1+; a venv needs "
                                 "--system-site-packages)"))
    elif (trt_major(version) or 0) < MIN_TRT_MAJOR:
        rows.append(("TensorRT", f"{version}: too old, edgevos needs TensorRT {MIN_TRT_MAJOR}.x: flash JetPack 6.1 or 6.2"))
    else:
        rows.append(("TensorRT", version))
    try:
        rt = CudaRuntime()
        v = rt.versions()
        ident = identity_from(rt.device_attribute(75), rt.device_attribute(76), rt.device_attribute(16))
        rows.append(("CUDA runtime / driver", f"{v['runtime'] // 1000}.{v['runtime'] % 1000 // 10} / "
                                              f"{v['driver'] // 1000}.{v['driver'] % 1000 // 10}"))
        rows.append(("engine device", ident))
    except CudaError as exc:
        rows.append(("engine device", f"n/a ({exc})"))
    return rows


def jetson(root: str = "/") -> dict:
    release = Path(root, "etc/nv_tegra_release")
    if not release.is_file():
        return {"is_jetson": False}
    l4t = parse_tegra_release(_read(release, ""))
    jetpack = NA
    dpkg = _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    if dpkg:
        jetpack = dpkg.split("-")[0].split("+")[0]
    if jetpack == NA:
        jetpack = jetpack_for_l4t(l4t)
    return {
        "is_jetson": True,
        "model": board_model(root),
        "l4t": l4t or NA,
        "jetpack": jetpack,
        "nvpmodel": parse_nvpmodel(_run(["nvpmodel", "-q"])),
        "jetson_clocks": jetson_clocks_state(str(Path(root, "sys"))),
    }


def collect() -> dict:
    """Every fact the doctor reports, as plain JSON-serialisable values."""
    from edgevos import __version__

    pk = packages()
    return {
        "edgevos": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": pk,
        "onnxruntime_providers": onnxruntime_providers(),
        "torch": torch_info(),
        "gstreamer": gstreamer(),
        "cpu": cpu(),
        "memory": memory(),
        "gpu": gpu(),
        "jetson": jetson(),
        "tensorrt": dict(tensorrt_rows()),
    }


def format_report(info: dict) -> str:
    rows = [("edgevos", info["edgevos"]), ("python", f"{info['python']} ({info['executable']})"),
            ("platform", info["platform"])]
    for name, v in info["packages"].items():
        extra = ""
        if name == "onnxruntime" and v != NOT_INSTALLED:
            extra = f"  providers: {', '.join(info['onnxruntime_providers']) or NA}"
        if name == "torch" and v != NOT_INSTALLED:
            t = info["torch"]
            extra = f"  cuda: {t.get('cuda', NA)}, available: {t.get('cuda_available')}"
        rows.append((name, f"{v}{extra}"))
    g = info["gstreamer"]
    rows.append(("gstreamer", g["version"] + (f"  (via {g['via']})" if g["via"] != NA else "")))
    c = info["cpu"]
    rows.append(("cpu", f"{c['model']} [{c['arch']}], {c['usable_cores']} usable / {c['logical_cores']} logical cores"))
    flags = ", ".join(f"{f} {'yes' if ok is True else ('no' if ok is False else NA)}" for f, ok in c["flags"].items())
    rows.append(("cpu features", flags))
    m = info["memory"]
    rows.append(("memory", f"{m['total_gib']} GiB total, {m['available_gib']} GiB available"))
    gp = info["gpu"]
    if gp["gpus"]:
        gpus = "; ".join(f"{x['name']} (driver {x['driver']}, {x['memory']})" for x in gp["gpus"])
    elif gp["device_nodes"]:
        gpus = f"device nodes {', '.join(gp['device_nodes'][:4])} (nvidia-smi {gp['nvidia_smi']})"
    else:
        gpus = "none (no nvidia-smi, no /dev/nvidia*)"
    rows.append(("gpu", gpus))
    rows += list((info.get("tensorrt") or {}).items())
    j = info["jetson"]
    if j.get("is_jetson"):
        rows += [("jetson", j["model"]), ("L4T / JetPack", f"{j['l4t']} / {j['jetpack']}"),
                 ("nvpmodel", j["nvpmodel"]), ("jetson_clocks", j["jetson_clocks"])]
    else:
        rows.append(("jetson", "no (/etc/nv_tegra_release absent)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")


def main(args) -> int:
    info = collect()
    if getattr(args, "json", False):
        print(json.dumps(info, indent=2, default=str))
    else:
        print(format_report(info))
    return 0
