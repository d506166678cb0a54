"""Speed and power in ``edgevos check`` (:mod:`edgevos.jetson.check`): each stage's median time on an
opened engine set (:func:`time_stages`), and the power run: ``--frames`` frames of one engine set
(:func:`pick_run_set`) on ``--source`` with tegrastats logged, summarised
(:func:`summarise_tegrastats`) and judged (:func:`judge_run`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence

import numpy as np

from edgevos.jetson.check_engines import Tools, _close, variants
from edgevos.jetson.check_report import Row

if TYPE_CHECKING:
    from edgevos.jetson.check import Options


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
