"""One run that checks edgevos' TensorRT path on a Jetson and writes a report to attach to a bug.

``jetson/check.sh [BUNDLE] [options]`` (or ``edgevos check``, or ``python -m edgevos.jetson.check``):

1. **environment**: the board and L4T / JetPack (6.1+ needed), the power mode and whether
   ``jetson_clocks`` pinned the clocks, TensorRT (10.x), the CUDA 12 runtime and its driver,
   the GPU identity engines are keyed on, the GStreamer NVMM elements, and ``edgevos doctor``'s
   facts (in the JSON).
2. **engines**, with a bundle: the precision matrix the bundle allows (:func:`variants`: ``fp16``
   from the fp32 graphs, ``int8`` from ``int8-trt``, ``int8-f16`` from ``int8-trt-f16``, ``best``;
   ``fp16-dla<N>`` with ``--dla N``) built twice, by edgevos' Python builder and by the generated
   trtexec script, each into its own copy of the bundle under the output folder (the bundle
   itself is not changed); each engine's layer information is kept.
3. **accuracy**: every engine set against ONNX Runtime on the same inputs: per stage and output
   the SNR and max |diff| against the FP32 graph and against the graph the engine was built from
   (feeds recorded from the step program on the clip), and the end-to-end mask IoU of the step
   program on the clip against ONNX Runtime FP32 and against the source graph.
4. **speed**: each stage's median time on the TensorRT backend, and trtexec's GPU compute time
   per engine of the trtexec build.
5. **power**: a ``--frames`` (300) frame run of one engine set on ``--source`` with tegrastats
   logged to ``tegrastats.log`` and summarised (mean / max watts, energy per frame).

It prints one table (check, state, detail) and writes ``check.json`` (:data:`FORMAT`) and
``check.txt`` into ``--out``; every tool's output is kept under ``--out``/logs.  Exit status: 0
when no check failed (WARN allowed), 1 when one did, 2 on bad arguments.

What runs on the board and what is decided here is split: the row judgements
(:func:`board_row`, :func:`cuda_row`, :func:`judge_stages`, :func:`judge_e2e`, ...), the argument
lists (:func:`variants`, :func:`trtexec_time_args`), the comparisons (:func:`compare_outputs`,
:func:`compare_engine`), the log parsers (:func:`parse_trtexec_time`,
:func:`summarise_tegrastats`) and the report (:func:`render_table`) are plain functions; the
board is reached through :class:`Probe` (facts) and :class:`Tools` (build, open an engine set,
time with trtexec), which tests replace.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from edgevos.errors import EdgevosError, InputError

logger = logging.getLogger(__name__)

#: the report's format tag (``check.json``)
FORMAT = "edgevos-check/1"
STATES = ("PASS", "WARN", "FAIL", "SKIP")
#: L4T release of JetPack 6.1 (the first with TensorRT 10)
MIN_L4T = (36, 4)
CUDA_MAJOR = 12
#: an output whose SNR against the graph it was built from is below this is suspect (WARN):
#: FP16 float layers between INT8 regions already cost 12-27 dB on the shipped encoders
SNR_WARN_DB = 10.0
#: end-to-end mask IoU against ONNX Runtime on the same graph below which a set is suspect (WARN)
IOU_WARN = 0.9
#: end-to-end mask IoU against ONNX Runtime FP32 below which the masks are wrong (FAIL)
IOU_FAIL = 0.5
GST_NEEDED = ("nvvidconv", "nvv4l2decoder")
GST_OPTIONAL = {"nvv4l2h264enc": "no nvv4l2h264enc: video outputs encode with x264enc",
                "nvarguscamerasrc": "no nvarguscamerasrc: no CSI cameras (csi://)",
                "nv3dsink": "no nv3dsink: display:// uses another video sink"}
TRTEXEC = "/usr/src/tensorrt/bin/trtexec"


# ------------------------------------------------------------------------------ rows
@dataclass
class Row:
    """One line of the table: a check, its state (PASS / WARN / FAIL / SKIP) and what it found."""

    name: str
    state: str
    detail: str

    def __post_init__(self):
        if self.state not in STATES:
            raise ValueError(f"state {self.state!r} is not one of {STATES}")

    def as_dict(self) -> dict:
        return {"name": self.name, "state": self.state, "detail": self.detail}


def verdict(rows: Sequence[Row]) -> str:
    """'FAIL' when a row failed, else 'PASS'."""
    return "FAIL" if any(r.state == "FAIL" for r in rows) else "PASS"


def render_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned ``check  state  detail`` table."""
    width = max([len("check")] + [len(r.name) for r in rows])
    lines = [f"{'check'.ljust(width)}  state  detail"]
    lines += [f"{r.name.ljust(width)}  {r.state.ljust(5)}  {r.detail}" for r in rows]
    return "\n".join(lines)


ENGINE_COLUMNS = ("engine set", "from", "min SNR fp32", "min SNR src", "IoU fp32", "IoU src", "stages ms",
                  "trtexec ms")


def engine_table(engines: Mapping[str, Mapping]) -> str:
    """One line per engine set of a report: worst stage SNR (dB) against ONNX Runtime FP32 and the
    source graph, mean mask IoU against each, the sum of the stages' median times on the backend
    and of trtexec's GPU compute means ('-' where not measured)."""
    def num(v, fmt):
        if v is None:
            return "-"
        if isinstance(v, str):
            return v
        return "inf" if math.isinf(v) else format(v, fmt)

    body = []
    for label, e in engines.items():
        src = e.get("source", "fp32")
        stages = e.get("stages") or []
        e2e = e.get("e2e") or {}
        ms = e.get("stage_ms") or {}
        tx = [t.get("mean_ms") for t in (e.get("trtexec_ms") or {}).values() if t]
        body.append((
            label, src,
            num(_min(_snr(r.get("snr_vs_fp32_db")) for r in stages), ".1f"),
            num(_min(_snr(r.get(f"snr_vs_{src}_db")) for r in stages), ".1f") if src != "fp32" else "-",
            num((e2e.get("fp32") or {}).get("mean"), ".3f"),
            num((e2e.get(src) or {}).get("mean"), ".3f") if src != "fp32" else "-",
            num(sum(t["p50_ms"] for t in ms.values()) if ms else None, ".2f"),
            num(sum(tx) if tx and None not in tx else None, ".3f"),
        ) if not e.get("error") else (label, src, "error: " + str(e["error"])[:60], "", "", "", "", ""))
    rows = [ENGINE_COLUMNS] + body
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(ENGINE_COLUMNS))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _snr(v):
    """An SNR as stored in a report ('inf' after JSON) back to a float."""
    if isinstance(v, str):
        return float(v)
    return v


def plain_json(obj):
    """``obj`` with non-finite floats as the strings 'inf', '-inf', 'nan' (strict JSON) and paths as text."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return plain_json(obj.item())
    return obj


# ------------------------------------------------------------------------------ environment
def l4t_tuple(version: Optional[str]):
    parts = re.findall(r"\d+", version or "")
    return tuple(int(p) for p in parts[:3]) if parts else None


def board_row(release_text: Optional[str], jetpack: Optional[str] = None) -> Row:
    """/etc/nv_tegra_release (None: absent) -> the board row: L4T r36.4+ (JetPack 6.1 / 6.2) passes."""
    from edgevos.doctor import jetpack_for_l4t, parse_tegra_release

    if release_text is None:
        return Row("board", "FAIL", "not a Jetson (/etc/nv_tegra_release missing): run this on the board, or in a "
                                    "container started with --runtime nvidia")
    l4t = parse_tegra_release(release_text)
    if not l4t:
        first = release_text.strip().splitlines()[0] if release_text.strip() else ""
        return Row("board", "FAIL", f"cannot read the L4T release from '{first}' (/etc/nv_tegra_release)")
    jp = jetpack if jetpack and jetpack != "n/a" else jetpack_for_l4t(l4t)
    jp_text = f", JetPack {jp}" if jp and jp != "n/a" else ""
    if l4t_tuple(l4t)[:2] >= MIN_L4T:
        return Row("board", "PASS", f"L4T {l4t}{jp_text}")
    return Row("board", "FAIL", f"L4T {l4t}{jp_text} is older than JetPack 6.1 (L4T 36.4; JetPack 6.0 ships "
                                f"TensorRT 8.6): flash JetPack 6.1 or 6.2")


def power_row(nvpmodel: Optional[str], clocks: Optional[str]) -> Row:
    """Power mode and jetson_clocks: pinned clocks pass, a governor-driven run warns."""
    mode = nvpmodel if nvpmodel and nvpmodel != "n/a" else "unknown (nvpmodel -q gave nothing)"
    if clocks == "on":
        return Row("power mode", "PASS", f"{mode}, jetson_clocks on")
    why = "off" if clocks == "off" else "unknown"
    return Row("power mode", "WARN", f"{mode}, jetson_clocks {why}: timings follow the governor; "
                                     f"'sudo jetson_clocks' pins the clocks of this mode")


def tensorrt_row(version: Optional[str]) -> Row:
    from edgevos.jetson.trtinfo import MIN_TRT_MAJOR, trt_major

    if not version or version == "unknown":
        return Row("TensorRT", "FAIL", "not found (no tensorrt module, no libnvinfer): 'sudo apt-get install "
                                       "nvidia-jetpack'; a venv needs --system-site-packages to see TensorRT's "
                                       "Python bindings (jetson/setup.sh makes one)")
    major = trt_major(version)
    if major is None or major < MIN_TRT_MAJOR:
        return Row("TensorRT", "FAIL", f"{version}: edgevos needs TensorRT {MIN_TRT_MAJOR}.x: flash JetPack 6.1 or "
                                       f"6.2 (TensorRT 10.3)")
    return Row("TensorRT", "PASS", version)


def cuda_row(text: Optional[str], error: Optional[str] = None) -> Row:
    """'runtime 12.6 driver 12.6' (trtinfo.cuda_versions_text) -> PASS for a CUDA 12 runtime the driver supports."""
    if text is None:
        return Row("CUDA", "FAIL", error or "the CUDA runtime did not load")
    m = re.fullmatch(r"runtime (\d+)\.(\d+) driver (\d+)\.(\d+)", text.strip())
    if m:
        rmaj, rmin, dmaj, dmin = (int(g) for g in m.groups())
        if rmaj == CUDA_MAJOR and (dmaj, dmin) >= (rmaj, rmin):
            return Row("CUDA", "PASS", text.strip())
    return Row("CUDA", "FAIL", f"{text.strip()}: edgevos needs the CUDA {CUDA_MAJOR} runtime of JetPack 6 and a "
                               f"driver at least as new (check LD_LIBRARY_PATH for another libcudart)")


def gpu_row(identity: Optional[str]) -> Row:
    if identity and re.fullmatch(r"sm\d+x\d+", identity):
        return Row("GPU", "PASS", f"{identity} (engines are keyed on it)")
    return Row("GPU", "FAIL", f"no CUDA device answered ('{identity or 'nothing'}'): check /dev/nvgpu, /dev/nvmap "
                              f"and that the user is in the 'video' group")


def gstreamer_row(present: Optional[Mapping[str, bool]]) -> Row:
    """``present``: element -> found (None: no gst-inspect-1.0)."""
    if present is None:
        return Row("GStreamer", "FAIL", "gst-inspect-1.0 not found: 'sudo apt-get install gstreamer1.0-tools' "
                                        "(jetson/setup.sh installs it)")
    missing = [e for e in GST_NEEDED if not present.get(e)]
    if missing:
        return Row("GStreamer", "FAIL", f"missing {' '.join(missing)}: 'sudo apt-get install nvidia-l4t-gstreamer' "
                                        f"(an L4T container needs --runtime nvidia)")
    notes = [why for e, why in GST_OPTIONAL.items() if not present.get(e)]
    if notes:
        return Row("GStreamer", "WARN", "NVMM decode and convert present; " + "; ".join(notes))
    return Row("GStreamer", "PASS", ", ".join(GST_NEEDED + tuple(GST_OPTIONAL)))


class Probe:
    """The board's facts, read where they live.  Tests give recorded answers instead."""

    def __init__(self, env: Optional[Mapping[str, str]] = None):
        self.env = dict(os.environ if env is None else env)

    def tegra_release(self) -> Optional[str]:
        path = Path(self.env.get("NV_TEGRA_RELEASE", "/etc/nv_tegra_release"))
        try:
            return path.read_text(errors="replace")
        except OSError:
            return None

    def _command(self, cmd: Sequence[str]) -> Optional[str]:
        if shutil.which(cmd[0]) is None:
            return None
        try:
            p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    def jetson(self) -> dict:
        """Board model, L4T / JetPack (the nvidia-jetpack package, else from the L4T release),
        power mode and jetson_clocks, as ``edgevos doctor`` reads them."""
        from edgevos import doctor

        l4t = doctor.parse_tegra_release(self.tegra_release() or "")
        jetpack = (self._command(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"]) or "").split("-")[0].split("+")[0]
        return {"model": doctor.board_model(), "l4t": l4t or "n/a", "jetpack": jetpack or doctor.jetpack_for_l4t(l4t),
                "nvpmodel": doctor.parse_nvpmodel(self._command(["nvpmodel", "-q"])),
                "jetson_clocks": doctor.jetson_clocks_state()}

    def trt_version(self) -> str:
        from edgevos.jetson.trtinfo import trt_version

        return trt_version()

    def cuda(self) -> str:
        from edgevos.jetson.trtinfo import cuda_versions_text

        return cuda_versions_text()

    def identity(self) -> str:
        from edgevos.jetson.trtinfo import device_identity

        return device_identity()

    def gst_elements(self, names: Sequence[str]) -> Optional[Dict[str, bool]]:
        tool = self.env.get("GST_INSPECT", "gst-inspect-1.0")
        if shutil.which(tool) is None:
            return None
        out = {}
        for name in names:
            try:
                out[name] = subprocess.run([tool, name], capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                out[name] = False
        return out

    def doctor(self) -> dict:
        from edgevos import doctor

        return doctor.collect()


def environment(probe: Probe) -> tuple:
    """(rows, facts) of the environment checks."""
    from edgevos.jetson.trtinfo import CudaError

    facts: dict = {}
    release = probe.tegra_release()
    jet = probe.jetson() if release is not None else {}
    facts["jetson"] = jet
    rows = [board_row(release, jet.get("jetpack"))]
    if release is not None:
        rows.append(power_row(jet.get("nvpmodel"), jet.get("jetson_clocks")))
    facts["tensorrt"] = probe.trt_version()
    rows.append(tensorrt_row(facts["tensorrt"]))
    try:
        facts["cuda"] = probe.cuda()
        rows.append(cuda_row(facts["cuda"]))
    except CudaError as exc:
        facts["cuda"] = None
        rows.append(cuda_row(None, str(exc)))
    facts["identity"] = probe.identity()
    rows.append(gpu_row(facts["identity"]))
    facts["gstreamer"] = probe.gst_elements(GST_NEEDED + tuple(GST_OPTIONAL))
    rows.append(gstreamer_row(facts["gstreamer"]))
    try:
        facts["doctor"] = probe.doctor()
        rows.append(Row("doctor", "PASS", "edgevos doctor's facts are in the report (doctor)"))
    except Exception as exc:  # noqa: BLE001 - a report row, not a crash
        facts["doctor"] = None
        rows.append(Row("doctor", "FAIL", f"edgevos doctor failed: {type(exc).__name__}: {exc}"))
    return rows, facts


def tensorrt_usable(rows: Sequence[Row]) -> Optional[str]:
    """Why engines cannot be built here (the failed TensorRT / CUDA / GPU row), or None."""
    for r in rows:
        if r.name in ("TensorRT", "CUDA", "GPU") and r.state == "FAIL":
            return f"needs {r.name} (see its row)"
    return None


# ------------------------------------------------------------------------------ the precision matrix
@dataclass(frozen=True)
class Variant:
    """One engine set of the matrix: its label, how it is built, and the ONNX Runtime graph it is
    compared with besides FP32 (``source``: the graph with the same Q/DQ nodes)."""

    label: str
    options: object  # edgevos.export.tensorrt.BuildOptions
    source: str

    @property
    def key(self) -> str:
        """The bundle precision of the engines (``trt-int8``, ``trt-fp16-dla0`` ...)."""
        return f"trt-{self.options.tag}"


def variants(precisions: Sequence[str], dla: Optional[int] = None, only: Optional[Sequence[str]] = None,
             workspace_mb: int = 1024) -> List[Variant]:
    """The engine sets a bundle holding ``precisions`` can build: ``fp16`` (from fp32), ``int8``
    (int8-trt, float layers FP32), ``int8-f16`` (int8-trt-f16, float layers FP16), ``best``
    (int8-trt, INT8 + FP16 flags), ``fp16-dla<N>`` with ``dla``.  ``only`` keeps those labels
    (an unknown or unbuildable one is an InputError)."""
    from edgevos.export.tensorrt import BuildOptions

    have = set(precisions)
    out = []
    if "fp32" in have:
        out.append(Variant("fp16", BuildOptions("fp16", workspace_mb=workspace_mb), "fp32"))
    if "int8-trt" in have:
        out.append(Variant("int8", BuildOptions("int8", workspace_mb=workspace_mb, trt_float="fp32"), "int8-trt"))
    if "int8-trt-f16" in have and "int8-trt" in have:
        out.append(Variant("int8-f16", BuildOptions("int8", workspace_mb=workspace_mb, trt_float="fp16"), "int8-trt"))
    if "int8-trt" in have:
        out.append(Variant("best", BuildOptions("best", workspace_mb=workspace_mb), "int8-trt"))
    if dla is not None and "fp32" in have:
        out.append(Variant(f"fp16-dla{int(dla)}", BuildOptions("fp16", dla_core=int(dla), workspace_mb=workspace_mb),
                           "fp32"))
    if only:
        known = {v.label: v for v in out}
        wrong = [o for o in only if o not in known]
        if wrong:
            raise InputError(f"--precision {','.join(wrong)}: this bundle can build {sorted(known) or 'nothing'} "
                             f"(it holds {sorted(have)})")
        out = [known[o] for o in only]
    if not out:
        raise InputError(f"the bundle holds {sorted(have)}: TensorRT engines need its fp32 or int8-trt ONNX")
    return out


def trtexec_time_args(engine: str, dla_core: Optional[int] = None, iterations: int = 50) -> List[str]:
    """trtexec arguments that time a built engine (random inputs, GPU compute time per inference)."""
    args = [f"--loadEngine={engine}", "--warmUp=200", f"--iterations={int(iterations)}", "--duration=0"]
    if dla_core is not None:
        args.append(f"--useDLACore={int(dla_core)}")
    return args


_TIME_RE = re.compile(r"GPU Compute Time: (.*)")


def parse_trtexec_time(log: str) -> Optional[dict]:
    """trtexec's log -> ``{"passed": bool, "mean_ms", "median_ms", "min_ms", "max_ms"}`` (times None
    when it printed none); None when the text is no trtexec log (no '&&&& PASSED/FAILED')."""
    if "&&&& PASSED" in log:
        passed = True
    elif "&&&& FAILED" in log:
        passed = False
    else:
        return None
    out = {"passed": passed, "mean_ms": None, "median_ms": None, "min_ms": None, "max_ms": None}
    m = _TIME_RE.search(log)
    if m:
        for key, value in re.findall(r"(min|max|mean|median) = ([0-9.]+) ms", m.group(1)):
            out[f"{key}_ms"] = float(value)
    return out


# ------------------------------------------------------------------------------ comparisons
def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (ref - got)^2); inf when equal."""
    r = np.asarray(ref, np.float64)
    g = np.asarray(got, np.float64)
    noise = float(((r - g) ** 2).sum())
    if noise == 0.0:
        return float("inf")
    return float(10.0 * np.log10(max(float((r ** 2).sum()), 1e-30) / noise))


def compare_outputs(refs: Sequence[Mapping[str, np.ndarray]], gots: Sequence[Mapping[str, np.ndarray]]) -> Dict[str, dict]:
    """Per output over paired samples: SNR (dB, all samples pooled), max |diff|, max |ref| and
    whether every value was finite."""
    acc: Dict[str, dict] = {}
    for ref, got in zip(refs, gots):
        for name, r in ref.items():
            g = np.asarray(got[name], np.float64)
            r = np.asarray(r, np.float64)
            a = acc.setdefault(name, {"noise": 0.0, "signal": 0.0, "max_abs_diff": 0.0, "max_abs_ref": 0.0,
                                      "finite": True, "samples": 0})
            finite = bool(np.isfinite(g).all())
            a["finite"] &= finite
            d = np.abs(r - g) if finite else np.zeros_like(r)
            a["noise"] += float((d ** 2).sum())
            a["signal"] += float((r ** 2).sum())
            a["max_abs_diff"] = max(a["max_abs_diff"], float(d.max()) if d.size else 0.0)
            a["max_abs_ref"] = max(a["max_abs_ref"], float(np.abs(r).max()) if r.size else 0.0)
            a["samples"] += 1
    out = {}
    for name, a in acc.items():
        if not a["finite"]:
            snr = None
        elif a["noise"] == 0.0:
            snr = float("inf")
        else:
            snr = float(10.0 * np.log10(max(a["signal"], 1e-30) / a["noise"]))
        out[name] = {"snr_db": snr, "max_abs_diff": a["max_abs_diff"], "max_abs_ref": a["max_abs_ref"],
                     "finite": a["finite"], "samples": a["samples"]}
    return out


def run_stage(backend, stage: str, feeds: Sequence[Mapping[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
    """The stage's outputs on every feed, copied to the host."""
    return [{k: np.array(v) for k, v in backend.run(stage, f).items()} for f in feeds]


def compare_engine(candidate, references: Mapping[str, Mapping[str, List[dict]]],
                   feeds: Mapping[str, Sequence[Mapping[str, np.ndarray]]]) -> List[dict]:
    """Rows ``{stage, output, samples, finite, snr_vs_<ref>_db, max_abs_diff_vs_<ref>}`` of one
    engine set on the recorded ``feeds``, against each reference's outputs on the same feeds
    (``references[name][stage]``: outputs per feed)."""
    rows = []
    for stage, samples in feeds.items():
        if not samples or not candidate.has(stage):
            continue
        got = run_stage(candidate, stage, samples)
        by_output: Dict[str, dict] = {}
        for ref_name, ref in references.items():
            if stage not in ref:
                continue
            for output, c in compare_outputs(ref[stage], got).items():
                row = by_output.setdefault(output, {"stage": stage, "output": output, "samples": c["samples"],
                                                    "finite": c["finite"]})
                row["finite"] = row["finite"] and c["finite"]
                row[f"snr_vs_{ref_name}_db"] = c["snr_db"]
                row[f"max_abs_diff_vs_{ref_name}"] = c["max_abs_diff"]
        rows.extend(by_output.values())
    return rows


def _min(values):
    vals = [v for v in values if v is not None]
    return min(vals) if vals else None


def judge_stages(label: str, rows: Sequence[dict], source: str) -> Row:
    """One row for an engine set's stage comparisons: FAIL on a non-finite output, WARN when an
    output's SNR against the graph it was built from is below :data:`SNR_WARN_DB`."""
    name = f"{label} stages"
    if not rows:
        return Row(name, "SKIP", "no recorded feeds")
    bad = [f"{r['stage']}.{r['output']}" for r in rows if not r["finite"]]
    if bad:
        return Row(name, "FAIL", f"non-finite outputs: {', '.join(bad)}")
    key = f"snr_vs_{source}_db"

    def worst(k):
        have = [r for r in rows if r.get(k) is not None]
        return min(have, key=lambda r: r[k]) if have else None

    w_fp32, w_src = worst("snr_vs_fp32_db"), worst(key)
    parts = []
    if w_fp32:
        parts.append(f"min SNR vs ORT fp32 {_db(w_fp32['snr_vs_fp32_db'])} ({w_fp32['stage']}.{w_fp32['output']})")
    if w_src and source != "fp32":
        parts.append(f"vs ORT {source} {_db(w_src[key])} ({w_src['stage']}.{w_src['output']})")
    state = "WARN" if w_src and w_src[key] < SNR_WARN_DB else "PASS"
    if state == "WARN":
        parts.append(f"below {SNR_WARN_DB:g} dB against the graph it was built from")
    return Row(name, state, "; ".join(parts))


def _db(v) -> str:
    return "inf dB" if v is not None and math.isinf(v) else ("-" if v is None else f"{v:.1f} dB")


def mask_ious(reference: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict:
    """Mean and min mask IoU over frames 1.. (frame 0 is the given mask)."""
    from edgevos.metrics import agreement_iou

    ious = [agreement_iou(r, m) for r, m in zip(list(reference)[1:], list(masks)[1:])]
    return {"mean": float(np.mean(ious)) if ious else 1.0, "min": float(np.min(ious)) if ious else 1.0,
            "frames": len(ious)}


def judge_e2e(label: str, e2e: Mapping[str, dict], source: str) -> Row:
    """``e2e[ref]`` = mask IoU (mean, min) against ONNX Runtime on ``ref``: FAIL below
    :data:`IOU_FAIL` against FP32, WARN below :data:`IOU_WARN` against the source graph."""
    name = f"{label} masks"
    if not e2e:
        return Row(name, "SKIP", "no clip")
    fp32 = e2e.get("fp32")
    src = e2e.get(source, fp32)
    parts = []
    if fp32:
        parts.append(f"IoU vs ORT fp32 {fp32['mean']:.3f} (min {fp32['min']:.3f})")
    if source != "fp32" and source in e2e:
        parts.append(f"vs ORT {source} {src['mean']:.3f} (min {src['min']:.3f})")
    if fp32 and fp32["mean"] < IOU_FAIL:
        return Row(name, "FAIL", "; ".join(parts) + f": below {IOU_FAIL} against FP32, the masks are wrong")
    if src and src["mean"] < IOU_WARN:
        return Row(name, "WARN", "; ".join(parts) + f": below {IOU_WARN} against the graph it was built from")
    return Row(name, "PASS", "; ".join(parts))


# ------------------------------------------------------------------------------ tegrastats
def summarise_tegrastats(lines: Sequence[str]) -> Optional[dict]:
    """A tegrastats log -> samples, mean / max watts and its rail, mean GPU load, peak RAM and
    temperature; None when no line carried power."""
    from edgevos.runtime.power import parse_tegrastats

    watts, gpu, ram, temp, source = [], [], [], [], None
    for line in lines:
        p = parse_tegrastats(line)
        if p is None:
            continue
        if p.get("power_mw") is not None:
            watts.append(p["power_mw"] / 1000.0)
            source = p.get("power_source")
        if p.get("gpu_load") is not None:
            gpu.append(p["gpu_load"])
        if p.get("ram_used_mb") is not None:
            ram.append(p["ram_used_mb"])
        if p.get("temps"):
            temp.append(max(p["temps"].values()))
    if not watts:
        return None
    return {"samples": len(watts), "mean_watts": round(float(np.mean(watts)), 3),
            "max_watts": round(float(np.max(watts)), 3), "rail": source,
            "gpu_load_mean": round(float(np.mean(gpu)), 1) if gpu else None,
            "ram_peak_mb": int(max(ram)) if ram else None, "temp_max_c": float(max(temp)) if temp else None}


def judge_run(label: str, summary: Mapping, tegra: Optional[Mapping]) -> Row:
    name = f"run {label}"
    if summary.get("error"):
        return Row(name, "FAIL", f"{summary.get('stopped_by')}: {summary['error']}")
    fps = summary.get("fps")
    parts = [f"{summary.get('frames')} frames", f"{fps:.1f} FPS" if fps else "FPS n/a"]
    lat = (summary.get("latency_ms") or {}).get("e2e") or {}
    if lat.get("p50") is not None:
        parts.append(f"p50 {lat['p50']:.1f} ms")
    power = summary.get("power")
    if tegra:
        parts.append(f"{tegra['mean_watts']:.2f} W mean ({tegra['rail']}), max {tegra['max_watts']:.2f} W")
    if power and power.get("energy_per_frame_j") is not None:
        parts.append(f"{power['energy_per_frame_j'] * 1000:.1f} mJ/frame")
    if not tegra and not power:
        parts.append("power n/a (no tegrastats output: run as root)")
        return Row(name, "WARN", ", ".join(parts))
    return Row(name, "PASS", ", ".join(parts))


# ------------------------------------------------------------------------------ the board side
@dataclass
class Tools:
    """What touches TensorRT: building an engine set into a bundle copy (Python builder, trtexec
    script), opening it as a backend, timing an engine with trtexec.  Tests give stand-ins."""

    trtexec: str = TRTEXEC
    log_dir: Optional[Path] = None
    build_python: Optional[Callable] = None
    build_trtexec: Optional[Callable] = None
    open_engines: Optional[Callable] = None
    time_trtexec: Optional[Callable] = None

    def __post_init__(self):
        self.build_python = self.build_python or self._build_python
        self.build_trtexec = self.build_trtexec or self._build_trtexec
        self.open_engines = self.open_engines or self._open_engines
        self.time_trtexec = self.time_trtexec or self._time_trtexec

    def _log(self, name: str) -> Path:
        d = Path(self.log_dir or ".")
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def _build_python(self, bundle_dir: Path, variant: Variant) -> dict:
        from edgevos.export.tensorrt import build_bundle_engines

        build_bundle_engines(bundle_dir, variant.options, progress=False)
        return {}

    def _build_trtexec(self, bundle_dir: Path, variant: Variant) -> dict:
        from edgevos.bundle import load_bundle
        from edgevos.export.tensorrt import register_engines, write_build_script

        script = bundle_dir.parent / f"build_{variant.label}.sh"
        write_build_script(load_bundle(bundle_dir), [variant.options], script)
        log = self._log(f"trtexec-build-{variant.label}.log")
        env = dict(os.environ, TRTEXEC=self.trtexec, WORKSPACE_MB=str(variant.options.workspace_mb))
        with open(log, "w") as f:
            p = subprocess.run(["bash", str(script), str(bundle_dir)], stdout=f, stderr=subprocess.STDOUT, env=env)
        if p.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise EdgevosError(f"the trtexec script exited {p.returncode}: {tail[0]} (see {log})")
        register_engines(bundle_dir)
        return {"script": str(script), "log": str(log)}

    def _open_engines(self, bundle_dir: Path, variant: Variant):
        from edgevos.backend import open_backend
        from edgevos.bundle import load_bundle

        return open_backend("tensorrt", load_bundle(bundle_dir), variant.options.tag)

    def _time_trtexec(self, engine: Path, variant: Variant) -> Optional[dict]:
        args = trtexec_time_args(str(engine), variant.options.dla_core)
        p = subprocess.run([self.trtexec] + args, capture_output=True, text=True)
        self._log(f"trtexec-time-{engine.name}.log").write_text(p.stdout + p.stderr)
        return parse_trtexec_time(p.stdout + p.stderr)


def time_stages(backend, feeds: Mapping[str, Sequence[Mapping[str, np.ndarray]]], iterations: int = 20) -> Dict[str, dict]:
    """Median and mean milliseconds of each stage on its first recorded feed (after one warm-up call)."""
    out = {}
    for stage, samples in feeds.items():
        if not samples or not backend.has(stage):
            continue
        backend.run(stage, samples[0])
        times = []
        for _ in range(int(iterations)):
            backend.run(stage, samples[0])
            times.append(backend.last_ms[stage])
        out[stage] = {"p50_ms": round(float(np.median(times)), 3), "mean_ms": round(float(np.mean(times)), 3)}
    return out


def _close(backend) -> None:
    close = getattr(backend, "close", None)
    if close:
        close()


def _program_factory(bundle, tau: float):
    from edgevos.models.registry import get_family

    fam = get_family(bundle.family)
    return lambda backend, t=tau: fam.make_program(backend, bundle.config, tau=t)


def record_references(bundle, sequences, e2e_frames: int, samples: int, tau: float, references: Sequence[str],
                      threads: Optional[int] = None) -> tuple:
    """ONNX Runtime on each reference precision: the feeds every stage receives (recorded on
    FP32 over the first sequence at tau and at 0, so reuse-path stages run too), each
    reference's outputs on those feeds, and its masks on every sequence at ``tau``."""
    from edgevos.backend import open_backend
    from edgevos.export.calibrate import RecordingBackend, run_program

    make = _program_factory(bundle, tau)
    fp32 = open_backend("onnxruntime", bundle, "fp32", threads)
    rec = RecordingBackend(fp32, max_samples_per_stage=samples, seed=0)
    for t in sorted({float(tau), 0.0}, reverse=True):
        run_program(make(rec, t), sequences[0], min(len(sequences[0]), max(samples, 2)))
    feeds = {s: list(v) for s, v in rec.samples.items() if v}
    outputs, masks = {}, {}
    for ref in references:
        be = fp32 if ref == "fp32" else open_backend("onnxruntime", bundle, ref, threads)
        outputs[ref] = {s: run_stage(be, s, f) for s, f in feeds.items()}
        masks[ref] = [run_program(make(be), seq, e2e_frames) for seq in sequences]
        if be is not fp32:
            _close(be)
    _close(fp32)
    return feeds, outputs, masks


def check_engine_set(label: str, variant: Variant, backend, feeds, ref_outputs, ref_masks, sequences,
                     bundle, e2e_frames: int, tau: float) -> tuple:
    """Stage comparisons, end-to-end masks and stage times of one opened engine set -> (rows, record)."""
    from edgevos.export.calibrate import run_program

    refs = {k: v for k, v in ref_outputs.items() if k in ("fp32", variant.source)}
    stages = compare_engine(backend, refs, feeds)
    make = _program_factory(bundle, tau)
    masks = [run_program(make(backend), seq, e2e_frames) for seq in sequences]
    e2e = {}
    for ref, ref_m in ref_masks.items():
        if ref in ("fp32", variant.source):
            per = [mask_ious(r, m) for r, m in zip(ref_m, masks)]
            e2e[ref] = {"mean": float(np.mean([p["mean"] for p in per])), "min": float(np.min([p["min"] for p in per])),
                        "frames": int(sum(p["frames"] for p in per))}
    timing = time_stages(backend, feeds)
    rows = [judge_stages(label, stages, variant.source), judge_e2e(label, e2e, variant.source)]
    return rows, {"stages": stages, "e2e": e2e, "stage_ms": timing}


def copy_for_engines(bundle_dir, dest: Path) -> Path:
    """A copy of the bundle without its engines, to build into (the bundle is not changed)."""
    from edgevos.bundle import copy_bundle

    return copy_bundle(bundle_dir, dest, keep=lambda precision: not precision.startswith("trt-"))


@dataclass
class Options:
    bundle: Optional[Path] = None
    out: Path = Path("edgevos-check")
    clip: str = "test://1"
    clip_mask: Optional[str] = None
    e2e_frames: int = 30
    samples: int = 8
    source: Optional[str] = None
    frames: int = 300
    tau: float = 1.0
    precisions: Optional[List[str]] = None
    run_precision: Optional[str] = None
    dla: Optional[int] = None
    workspace_mb: int = 1024
    trtexec: bool = True
    power_run: bool = True
    keep: bool = False
    threads: Optional[int] = None
    argv: List[str] = field(default_factory=list)


def run_check(opts: Options, probe: Optional[Probe] = None, tools: Optional[Tools] = None,
              power_command: Optional[List[str]] = None) -> dict:
    """Every check; returns the report (also written to ``opts.out``/check.json and check.txt)."""
    from edgevos import __version__

    out = Path(opts.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    probe = probe or Probe()
    tools = tools or Tools(trtexec=_find_trtexec(), log_dir=logs)
    if tools.log_dir is None:
        tools.log_dir = logs
    t0 = time.perf_counter()
    rows, facts = environment(probe)
    report = {"format": FORMAT, "edgevos": __version__, "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
              "argv": list(opts.argv), "environment": facts, "engines": {}, "run": None, "out": str(out)}
    if opts.bundle is not None:
        rows += _check_bundle(opts, tools, tensorrt_usable(rows), report, out, logs, power_command)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["checks"] = [r.as_dict() for r in rows]
    report["result"] = verdict(rows)
    report = plain_json(report)
    from edgevos.files import write_json

    write_json(out / "check.json", report, indent=1, allow_nan=False)
    text = render_table(rows)
    if report["engines"]:
        text += "\n\n" + engine_table(report["engines"])
    (out / "check.txt").write_text(text + f"\n\nresult: {report['result']}\n")
    return report


def _find_trtexec() -> str:
    exe = os.environ.get("TRTEXEC", TRTEXEC)
    if os.access(exe, os.X_OK):
        return exe
    return shutil.which("trtexec") or exe


def _check_bundle(opts: Options, tools: Tools, unusable: Optional[str], report: dict, out: Path, logs: Path,
                  power_command) -> List[Row]:
    from edgevos.bundle import load_bundle
    from edgevos.export.calibrate import open_sequences

    rows: List[Row] = []
    bundle = load_bundle(opts.bundle)
    matrix = variants(bundle.precisions, opts.dla, opts.precisions, opts.workspace_mb)
    report["bundle"] = {"path": str(bundle.root), "family": bundle.family, "input_size": list(bundle.input_size),
                        "precisions": bundle.precisions, "variants": [v.label for v in matrix]}
    builders = ["python"] + (["trtexec"] if opts.trtexec else [])
    if unusable:
        for v in matrix:
            rows.append(Row(f"{v.label} build", "SKIP", unusable))
        rows.append(Row("run", "SKIP", unusable))
        return rows
    sequences = open_sequences(opts.clip, mask=opts.clip_mask, max_frames=opts.e2e_frames)[:1]
    references = ["fp32"] + (["int8-trt"] if any(v.source == "int8-trt" for v in matrix) else [])
    t = time.perf_counter()
    feeds, ref_outputs, ref_masks = record_references(bundle, sequences, opts.e2e_frames, opts.samples, opts.tau,
                                                      references, opts.threads)
    report["references"] = {"clip": opts.clip, "sequence": str(getattr(sequences[0], "name", "")),
                            "frames": min(len(sequences[0]), opts.e2e_frames), "precisions": references,
                            "samples": {s: len(f) for s, f in feeds.items()}, "seconds": round(time.perf_counter() - t, 1)}
    work = out / "work"
    built: Dict[str, Path] = {}
    for v in matrix:
        for builder in builders:
            label = f"{v.label}/{builder}"
            record: dict = {"variant": v.label, "builder": builder, "source": v.source, "engines": v.key,
                            "options": {"precision": v.options.precision, "trt_float": v.options.trt_float,
                                        "dla_core": v.options.dla_core, "workspace_mb": v.options.workspace_mb}}
            report["engines"][label] = record
            dest = work / v.label / builder / "bundle"
            t = time.perf_counter()
            try:
                if dest.exists():
                    shutil.rmtree(dest)
                copy_for_engines(bundle.root, dest)
                if builder == "python":  # one timing cache for every set: later builds reuse the timings
                    cached = replace(v, options=replace(v.options, timing_cache=str(work / "timing.cache")))
                    record.update(tools.build_python(dest, cached) or {})
                else:
                    record.update(tools.build_trtexec(dest, v) or {})
            except Exception as exc:  # noqa: BLE001 - one engine set failing is a row, not the end
                logger.debug("building %s failed", label, exc_info=True)
                record["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(Row(f"{label} build", "FAIL", record["error"]))
                continue
            record["build_seconds"] = round(time.perf_counter() - t, 1)
            record["built"] = _built_stages(dest, v)
            rows.append(Row(f"{label} build", "PASS", f"{record['build_seconds']:.0f} s; " + _runs_text(record["built"])))
            try:
                backend = tools.open_engines(dest, v)
            except Exception as exc:  # noqa: BLE001
                record["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(Row(f"{label} load", "FAIL", record["error"]))
                continue
            try:
                set_rows, res = check_engine_set(label, v, backend, feeds, ref_outputs, ref_masks, sequences, bundle,
                                                 opts.e2e_frames, opts.tau)
            except Exception as exc:  # noqa: BLE001
                record["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(Row(f"{label} run", "FAIL", record["error"]))
                continue
            finally:
                _close(backend)
            record.update(res)
            rows += set_rows
            rows.append(Row(f"{label} time", "PASS", ", ".join(f"{s} {t['p50_ms']:.2f} ms" for s, t in res["stage_ms"].items())))
            if builder == "trtexec":
                record["trtexec_ms"] = _time_engines(tools, dest, v, record)
                rows.append(_trtexec_time_row(label, record["trtexec_ms"]))
            else:
                built[v.label] = dest
    if opts.power_run:
        rows.append(_power_run(opts, bundle, built, report, out, tools, power_command))
    if not opts.keep:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _built_stages(dest: Path, v: Variant) -> dict:
    """Per stage what the manifest says the engine runs in (Python builder) or the engine file."""
    from edgevos.bundle import load_bundle

    b = load_bundle(dest)
    rec = ((b.manifest.get("tensorrt") or {}).get(v.key) or {}).get("stages") or {}
    out = {}
    for spec in b.specs:
        entry = dict(rec.get(spec.name) or {})
        if v.key in b.precisions:
            entry["engine"] = b.stage_path(spec.name, v.key).name
        out[spec.name] = entry
    return out


def _runs_text(built: Mapping[str, dict]) -> str:
    parts = []
    for stage, e in built.items():
        what = e.get("runs", "built")
        layers = e.get("layers")
        if layers:
            what += " (" + ", ".join(f"{k} {n}" for k, n in sorted(layers.items())) + ")"
        parts.append(f"{stage} {what}")
    return ", ".join(parts)


def _time_engines(tools: Tools, dest: Path, v: Variant, record: dict) -> dict:
    out = {}
    for stage, e in (record.get("built") or {}).items():
        if e.get("engine"):
            out[stage] = tools.time_trtexec(dest / e["engine"], v)
    return out


def _trtexec_time_row(label: str, times: Mapping[str, Optional[dict]]) -> Row:
    failed = [s for s, t in times.items() if not t or not t.get("passed")]
    text = ", ".join(f"{s} {t['mean_ms']:.3f} ms" for s, t in times.items() if t and t.get("mean_ms") is not None)
    if failed:
        return Row(f"{label} trtexec", "FAIL", f"trtexec could not run {', '.join(failed)} (see logs/trtexec-time-*)")
    return Row(f"{label} trtexec", "PASS", f"GPU compute mean: {text}" if text else "passed")


def pick_run_set(built: Mapping[str, Path], wanted: Optional[str]) -> Optional[str]:
    """The engine set the power run uses: ``wanted``, else the first built of int8-f16, int8, fp16, best."""
    if wanted:
        return wanted if wanted in built else None
    return next((k for k in ("int8-f16", "int8", "fp16", "best") if k in built), next(iter(built), None))


def _power_run(opts: Options, bundle, built: Mapping[str, Path], report: dict, out: Path, tools: Tools,
               power_command: Optional[List[str]] = None) -> Row:
    from edgevos.models.registry import get_family
    from edgevos.runtime.pipeline import run
    from edgevos.runtime.power import PowerMonitor
    from edgevos.runtime.session import Session

    label = pick_run_set(built, opts.run_precision)
    if label is None:
        why = f"no engine set '{opts.run_precision}' was built" if opts.run_precision else "no engine set was built"
        return Row("run", "SKIP", why)
    v = next(x for x in variants(bundle.precisions, opts.dla, None, opts.workspace_mb) if x.label == label)
    source = opts.source or f"test://?frames={int(opts.frames)}&objects=1&size={bundle.input_size[0]}x{bundle.input_size[1]}"
    tegra_log = out / "tegrastats.log"
    monitor = PowerMonitor(interval_ms=100, command=power_command, log=tegra_log)
    backend = None
    try:
        backend = tools.open_engines(built[label], v)
        fam = get_family(bundle.family)
        session = Session(lambda **kw: fam.make_program(backend, bundle.config, **kw), opts.tau, None, bundle, backend)
        monitor.start().wait_for_sample()  # sampling before the first frame; run() restarts its interval
        summary = run(source, [], session=session, max_frames=int(opts.frames), power=monitor,
                      log=out / "run.json")
    except Exception as exc:  # noqa: BLE001 - the run failing is a row
        report["run"] = {"engine_set": label, "source": source, "error": f"{type(exc).__name__}: {exc}"}
        return Row(f"run {label}", "FAIL", report["run"]["error"])
    finally:
        monitor.stop()  # stopped already after a run; here for one that did not get that far
        if backend is not None:
            _close(backend)
    lines = tegra_log.read_text(errors="replace").splitlines() if tegra_log.is_file() else []
    tegra = summarise_tegrastats(lines)
    report["run"] = {"engine_set": label, "source": source, "summary": summary.as_dict(), "tegrastats": tegra,
                     "tegrastats_log": str(tegra_log) if lines else None}
    return judge_run(label, summary.as_dict(), tegra)


# ------------------------------------------------------------------------------ command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", nargs="?", help="bundle directory (from 'edgevos export'); without it only the "
                                             "environment is checked")
    p.add_argument("--out", default=os.environ.get("CHECK_OUT"),
                   help="folder for check.json, check.txt, logs and the tegrastats log (default: "
                        "edgevos-check-<time> here)")
    p.add_argument("--precision", help="engine sets to check, comma-separated: fp16, int8, int8-f16, best, "
                                       "fp16-dla<N> (default: every one the bundle can build)")
    p.add_argument("--dla", type=int, default=None, metavar="N", help="also build FP16 for DLA core N")
    p.add_argument("--clip", default="test://1",
                   help="sequence for the accuracy comparisons: a DAVIS-layout folder, a video with --clip-mask, "
                        "or test://N (default test://1, synthetic)")
    p.add_argument("--clip-mask", help="first-frame mask PNG of a --clip video")
    p.add_argument("--e2e-frames", type=int, default=30, help="frames of the clip compared end to end (default 30)")
    p.add_argument("--samples", type=int, default=8, help="recorded feeds per stage for the SNR (default 8)")
    p.add_argument("--source", help="source URI of the power run (default: test:// at the bundle's size)")
    p.add_argument("--frames", type=int, default=300, help="frames of the power run (default 300)")
    p.add_argument("--run-precision", help="engine set of the power run (default: int8-f16, int8, fp16 or best, "
                                           "the first built)")
    p.add_argument("--tau", type=float, default=1.0, help="reuse threshold of the programs (default 1: every frame "
                                                          "computed)")
    p.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace limit in MiB (default 1024)")
    p.add_argument("--no-trtexec", action="store_true", help="build with edgevos' Python builder only")
    p.add_argument("--no-run", action="store_true", help="skip the power run")
    p.add_argument("--keep", action="store_true", help="keep the built engines under OUT/work")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads of the references")


def options_from_args(args, argv: Sequence[str] = ()) -> Options:
    for name in ("e2e_frames", "samples", "frames", "workspace_mb"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    bundle = None
    if args.bundle:
        bundle = Path(args.bundle)
        if not (bundle / "manifest.json").is_file():
            raise InputError(f"{bundle} is not an edgevos bundle (no manifest.json): export one with 'edgevos export' "
                             f"or leave it out")
    out = Path(args.out) if args.out else Path(f"edgevos-check-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()] if args.precision else None
    return Options(bundle=bundle, out=out, clip=args.clip, clip_mask=args.clip_mask, e2e_frames=args.e2e_frames,
                   samples=args.samples, source=args.source, frames=args.frames, tau=args.tau, precisions=precisions,
                   run_precision=args.run_precision, dla=args.dla, workspace_mb=args.workspace_mb,
                   trtexec=not args.no_trtexec, power_run=not args.no_run, keep=args.keep, threads=args.threads,
                   argv=list(argv))


def main(args) -> int:
    opts = options_from_args(args, getattr(args, "argv", None) or sys.argv[1:])
    report = run_check(opts)
    print(Path(opts.out, "check.txt").read_text(), end="")
    print(f"report: {Path(opts.out) / 'check.json'} (attach it and {Path(opts.out) / 'logs'} to a bug report)")
    return 0 if report["result"] == "PASS" else 1


def cli(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="jetson/check.sh", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return main(args)
    except InputError as exc:
        print(f"check: error: {exc}", file=sys.stderr)
        return 2
    except EdgevosError as exc:
        print(f"check: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli())
