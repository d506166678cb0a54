"""The engine sets of ``edgevos check`` (:mod:`edgevos.jetson.check`): the precision matrix a bundle
allows (:func:`variants`), and :class:`Tools`, what touches TensorRT: building a set into a copy of
the bundle (:func:`copy_for_engines`) with the Python builder or the generated trtexec script,
opening it as a backend, and timing its engines with trtexec (:func:`trtexec_time_args`,
:func:`parse_trtexec_time`).  Tests give stand-in tools."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence

from edgevos.errors import EdgevosError, InputError
from edgevos.jetson.check_report import Row

TRTEXEC = "/usr/src/tensorrt/bin/trtexec"


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


def _find_trtexec() -> str:
    exe = os.environ.get("TRTEXEC", TRTEXEC)
    if os.access(exe, os.X_OK):
        return exe
    return shutil.which("trtexec") or exe


def _close(backend) -> None:
    close = getattr(backend, "close", None)
    if close:
        close()


def copy_for_engines(bundle_dir, dest: Path) -> Path:
    """A copy of the bundle without its engines, to build into (the bundle is not changed)."""
    from edgevos.bundle import copy_bundle

    return copy_bundle(bundle_dir, dest, keep=lambda precision: not precision.startswith("trt-"))


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
