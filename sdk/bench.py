"""``edgevos bench``: the benchmark matrix a user quotes.

    edgevos bench --source test:// --out runs/bench --backend torch,onnxruntime \\
        --precision fp32,int8-cpu --tau 1,0.7 --frames 40
    edgevos bench --source ../shared/data/davis2016-train --sequences bear,boat --out runs/bench-davis
    edgevos bench --source clip.mp4 --init-mask first.png --out runs/bench-clip      # no GT: J&F n/a

Rows are family[:preset] x backend x precision x tau.  ``torch`` rows run the
checkpoint with :meth:`Session.from_model`; ``onnxruntime`` and ``tensorrt`` rows
run a bundle exported once per family (in a child process) and cached in
``OUT/bundles/<family>-<precision>-<HxW>``.  Every sequence is decoded into
memory first and played through :func:`edgevos.runtime.pipeline.run_pipeline`, so
FPS and latency measure the session, not the decoder; the first ``--warmup``
frames of every sequence (the first is the initialisation) are excluded.

Per row: status, size on disk of what the row loads (the stage files of that
precision, or the checkpoint for torch), J&F (DAVIS protocol, where ground
truth exists), reuse rate, steady-state FPS, latency p50/p95/p99 end to end and
per stage, average watts and energy per frame where tegrastats/jtop can be
read, "n/a" elsewhere.  A failing row records its error and the matrix goes on.
Writes ``results.json``, ``results.md``, ``fps_vs_jf.png`` and the
physical-limit figure (``roofline.json``, ``roofline.png``: FLOPs per stage from
the ONNX graph, achieved GFLOP/s vs a GEMM peak measured in the same run).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from edgevos.backend import BACKENDS
from edgevos.errors import EdgevosError, InputError
from edgevos.bench_report import (
    NA,
    fmt_value,
    row_label,
    table_rows,
    stage_table_rows,
    format_text,
    onnx_precision,
    format_md,
    device_line,
    plot_fps_jf,
    roofline,
    best_peaks,
    roofline_table,
)
from edgevos.parsing import parse_hw, split_list

log = logging.getLogger(__name__)

#: what each backend accepts on the precision axis (the backend registry's vocabulary)
BACKEND_PRECISIONS = {name: entry.precisions for name, entry in BACKENDS.items()}


# ----------------------------------------------------------------------------- arguments
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True,
                   help="DAVIS-layout folder, a video file (+ --init-mask), test:// or "
                        "test://?objects=2&size=240x432&speed=1, davis://ROOT")
    p.add_argument("--out", required=True, help="output folder (results.json, results.md, plots, bundles/)")
    p.add_argument("--family", default="gfrtm", help="comma-separated families, slowfast with a preset: gfrtm,slowfast:3-7")
    p.add_argument("--backend", default="torch,onnxruntime", help="comma-separated: torch, onnxruntime, tensorrt")
    p.add_argument("--precision", default="fp32,int8-cpu",
                   help="comma-separated: fp32, int8-cpu, int8-trt (onnxruntime); int8, fp16, best (tensorrt engines)")
    p.add_argument("--tau", default="1,0.7", help="reuse-gate thresholds (1 = never reuse)")
    p.add_argument("--weights", default="default",
                   help="'default' (shipped), a checkpoint path, or per family: gfrtm=PATH,slowfast=PATH")
    p.add_argument("--input-size", default="256x448", help="model input HxW, multiples of 32 (default 256x448)")
    p.add_argument("--sequences", default=None,
                   help="comma-separated sequence names (DAVIS names; synthetic-<seed> for test://, default 2 sequences)")
    p.add_argument("--frames", type=int, default=None, help="frames per sequence (default: all; 60 for test://)")
    p.add_argument("--warmup", type=int, default=5, help="frames per sequence excluded from FPS/latency (default 5)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch / ONNX Runtime and the GEMM peak")
    p.add_argument("--init-mask", default=None, help="first-frame mask PNG when --source is a video file")
    p.add_argument("--max-reuse", type=int, default=None, help="force a computed frame after N reuses")
    p.add_argument("--calib", default="test://", help="calibration source for INT8 exports (default test://)")
    p.add_argument("--rebuild", action="store_true", help="re-export bundles even when cached ones match")
    p.add_argument("--no-roofline", action="store_true", help="skip the physical-limit figure")
    p.add_argument("--no-power", action="store_true", help="do not sample tegrastats/jtop")


def parse_families(text: str):
    """'gfrtm,slowfast:3-7' -> [('gfrtm', None), ('slowfast', '3-7')] (validated)."""
    from edgevos.models.registry import get_family

    out = []
    for item in split_list(text):
        name, _, preset = item.partition(":")
        get_family(name)
        if preset:
            if name != "slowfast":
                raise InputError(f"--family {item}: only slowfast has presets (1-1, 3-3, 7-7, 1-7, 3-7)")
            from edgevos.programs.slowfast import check_preset

            check_preset(preset)
        out.append((name, preset or None))
    if not out:
        raise InputError("--family is empty: name at least one family, e.g. gfrtm")
    return out


def parse_weights(text: str, families) -> Dict[str, str]:
    """'default' / a path for every family, or 'gfrtm=a.pt,slowfast=b.pt'."""
    if "=" not in text:
        return {f: text for f, _ in families}
    out = {}
    for item in split_list(text):
        fam, eq, w = item.partition("=")
        if not eq or not w:
            raise InputError(f"--weights item '{item}' is not FAMILY=PATH")
        out[fam.strip()] = w.strip()
    missing = sorted({f for f, _ in families} - set(out))
    if missing:
        raise InputError(f"--weights gives no checkpoint for {missing}: add {missing[0]}=PATH (or 'default')")
    return out


def matrix(families, backends, precisions, taus):
    """The rows to run and the combinations skipped (precision not meaningful for a backend)."""
    rows, skipped = [], []
    for b in backends:
        if b not in BACKEND_PRECISIONS:
            raise InputError(f"--backend '{b}' is unknown: choose from {list(BACKEND_PRECISIONS)}")
    known = {p for ps in BACKEND_PRECISIONS.values() for p in ps}
    for p in precisions:
        if p not in known:
            raise InputError(f"--precision '{p}' is unknown: choose from {sorted(known)}")
    for fam, preset in families:
        for b in backends:
            for p in precisions:
                if p not in BACKEND_PRECISIONS[b]:
                    skipped.append(f"{b} x {p}")
                    continue
                for t in taus:
                    rows.append({"family": fam, "preset": preset, "backend": b, "precision": p, "tau": t})
    return rows, sorted(set(skipped))


# ----------------------------------------------------------------------------- sources
def open_bench_sequences(source: str, names=(), frames: Optional[int] = None, init_mask: Optional[str] = None):
    """(sequences, has_ground_truth, description) for a DAVIS folder, davis://ROOT, test://, or a video + mask."""
    from edgevos import data

    if source.startswith("test://"):
        from edgevos.runtime.uri import parse_source

        uri = parse_source(source)
        unknown = set(uri.query) - {"size", "objects", "speed", "frames", "seed"}
        if unknown:
            raise InputError(f"{source}: unknown option(s) {sorted(unknown)}; known: objects, size, speed, frames")
        h, w = uri.get_size("size", (240, 432))
        n = frames or uri.get_int("frames", 60)
        if n < 3:
            raise InputError(f"--frames {n}: J&F needs at least 3 frames per sequence")
        seeds = []
        for name in (names or [f"synthetic-{k}" for k in range(2)]):
            try:
                seeds.append(int(str(name).rsplit("-", 1)[-1]))
            except ValueError:
                raise InputError(f"sequence '{name}' of test:// is not 'synthetic-<seed>' (e.g. synthetic-0)") from None
        kw = {"speed": uri.get_float("speed", 1.0)} if "speed" in uri.query else {}
        seqs = [data.make_sequence(data.SyntheticConfig(height=h, width=w, num_frames=n, seed=s,
                                                        num_objects=uri.get_int("objects", 2), **kw))
                for s in seeds]
        for s, seed in zip(seqs, seeds):
            s.name = f"synthetic-{seed}"
        return seqs, True, f"test:// ({len(seqs)} generated sequences, {h}x{w}, {n} frames)"
    if source.startswith("davis://"):
        from edgevos.runtime.uri import parse_source

        uri = parse_source(source)
        names = list(names) or split_list(uri.query.get("seq", ""))
        source = uri.path
    path = Path(source[len("file://"):] if source.startswith("file://") else source).expanduser()
    if not path.exists():
        raise InputError(f"--source {source} does not exist: pass a DAVIS-layout folder, a video file "
                         f"with --init-mask, or test://")
    if path.is_file():
        if not init_mask:
            raise InputError(f"--source {path} is a video: pass the mask of its first frame with --init-mask PNG")
        from edgevos.export.calibrate import VideoFileSequence

        seq = VideoFileSequence(path, Path(init_mask), frames)
        return [seq], False, f"{path.name} ({len(seq)} frames, first-frame mask {Path(init_mask).name})"
    ds = data.DavisDataset(path, sequences=list(names) or None)
    seqs = [data.FirstFrames(ds[n], frames) for n in ds.sequences]
    return seqs, True, f"DAVIS {path} ({len(seqs)} sequences)"


class _MemorySource:
    """Frames decoded beforehand, played as fast as the session takes them."""

    live = False

    def __init__(self, name: str, frames, gts):
        from edgevos.runtime.sources import Frame

        self.uri = f"memory://{name}"
        self._frames = [Frame(i, None, f, g) for i, (f, g) in enumerate(zip(frames, gts))]
        self.first_mask = gts[0]
        self.dropped = self.reconnects = 0
        self._stop = False

    def __iter__(self):
        for f in self._frames:
            if self._stop:
                return
            yield f

    def stop(self):
        self._stop = True

    def close(self):
        self._stop = True


class _CallCounter:
    """Wraps a backend: counts stage calls (per-object stages run once per object)."""

    def __init__(self, backend):
        self._backend = backend
        self.counts: Dict[str, int] = {}

    def run(self, stage, feeds, out=None):
        self.counts[stage] = self.counts.get(stage, 0) + 1
        return self._backend.run(stage, feeds, out)

    def __getattr__(self, name):
        return getattr(self._backend, name)


class _Collect:
    """A sink keeping every predicted mask (for J&F) and the stage calls each frame made."""

    def __init__(self, counter: Optional[_CallCounter] = None):
        self.uri, self.frames, self.masks, self.calls = "memory://masks", 0, {}, {}
        self._counter, self._seen = counter, {}

    def write(self, index, rgb, result):
        self.masks[index] = result.mask
        self.frames += 1
        if self._counter is not None:
            now = dict(self._counter.counts)
            self.calls[index] = {k: v - self._seen.get(k, 0) for k, v in now.items() if v - self._seen.get(k, 0)}
            self._seen = now

    def close(self):
        pass


# ----------------------------------------------------------------------------- bundles
def _sha(path) -> str:
    from edgevos.bundle import sha256

    return sha256(path)


def bundle_name(family: str, preset: Optional[str], onnx_precisions, size) -> str:
    tag = "+".join(p for p in onnx_precisions if p != "fp32") or "fp32"
    fam = family + (f"-{preset}" if preset else "")
    return f"{fam}-{tag}-{size[0]}x{size[1]}"


def ensure_bundle(out: Path, family: str, preset: Optional[str], weights_path: Path, onnx_precisions, size,
                  calib: str, threads: Optional[int], rebuild: bool = False, log=print) -> Path:
    """A bundle under ``out/bundles`` holding ``onnx_precisions`` for these weights: reused when a cached
    one matches (same weights SHA-256, family, preset, size), else exported by
    :func:`~edgevos.export.exporter.export_bundle` in a child process."""
    from edgevos.bundle import load_bundle

    root = out / "bundles"
    root.mkdir(parents=True, exist_ok=True)
    key = {"family": family, "preset": preset, "input_size": list(size), "weights_sha256": _sha(weights_path),
           "calib": calib}
    if not rebuild:
        for side in sorted(root.glob("*.source.json")):
            try:
                info = json.loads(side.read_text())
                cand = root / side.name[: -len(".source.json")]
                if all(info.get(k) == v for k, v in key.items()):
                    b = load_bundle(cand)
                    if all(p in b.precisions for p in onnx_precisions):
                        log(f"[bench] reusing bundle {cand}")
                        return cand
            except (ValueError, OSError, EdgevosError):
                continue
    name = bundle_name(family, preset, onnx_precisions, size)
    target = root / name
    if target.exists():
        import shutil

        shutil.rmtree(target)
    side = root / f"{name}.source.json"
    side.unlink(missing_ok=True)
    from edgevos.export.exporter import export_bundle

    log(f"[bench] exporting {name} ({', '.join(onnx_precisions)}) in a child process")
    t0 = time.perf_counter()
    export_log = root / f"{name}.export.log"
    try:  # a child process keeps this one's torch threads and GStreamer state as they are
        export_bundle(target, family, weights=str(weights_path), precisions=onnx_precisions, calib=calib,
                      calib_frames=48, input_size=size, heldout_frames=20, threads=threads or 1, progress=False,
                      isolate=True, log=export_log)
    except EdgevosError as exc:
        raise EdgevosError(f"export of {name} failed: {exc}; see {export_log}") from None
    side.write_text(json.dumps(key, indent=2))
    log(f"[bench] exported {target} in {time.perf_counter() - t0:.0f} s")
    return target


def build_engines(bundle_dir: Path, precision: str):
    """TensorRT engines for a cached bundle via ``edgevos build`` in a child process (Jetson / NVIDIA GPU)."""
    from edgevos.bundle import load_bundle

    proc = subprocess.run([sys.executable, "-m", "edgevos", "build", str(bundle_dir), "--precision", precision],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EdgevosError(f"edgevos build {bundle_dir} --precision {precision} failed: {tail[0]}")
    return load_bundle(bundle_dir)


def stage_files_mb(bundle, precision: str) -> float:
    files = {bundle.stage_path(s, precision) for s in bundle.stage_names}
    return sum(p.stat().st_size for p in files) / 1e6


# ----------------------------------------------------------------------------- one row
def _steady_window(stats):
    """(first steady index, frames after it, seconds) as RunStats.steady_fps counts them."""
    r = stats.records
    if len(r) < 2:
        return 0, 0, 0.0
    start = min(stats.warmup, len(r) - 2) if len(r) > stats.warmup + 1 else 0
    return start, len(r) - 1 - start, r[-1].t_end - r[start].t_end


def run_row(make_session, sequences, warmup: int, power=None, status=None) -> dict:
    """Play every sequence through one session; aggregate steady-state stats, J&F and power."""
    import numpy as np

    from edgevos.metrics import evaluate_sequence
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.stats import percentiles

    session = make_session()
    program = getattr(session, "program", None)
    counter = None
    if program is not None and hasattr(program, "backend"):
        counter = program.backend = _CallCounter(program.backend)
    per_call: Dict[str, list] = {}
    calls_per_frame: Dict[str, list] = {}
    steady, frames, n_steady, seconds = [], 0, 0, 0.0
    windows, j_all, f_all, per_seq = [], [], [], []
    if power is not None:
        power.start()
    try:
        for seq in sequences:
            imgs = [seq.frame(i) for i in range(len(seq))]
            gts = [seq.mask(i) for i in range(len(seq))]
            first = np.where(gts[0] == 255, 0, gts[0]).astype(np.uint8)
            gts_run = [first] + [g for g in gts[1:]]
            sink = _Collect(counter)
            summary = run_pipeline(_MemorySource(seq.name, imgs, gts_run), [sink], session, first_mask=first,
                                   warmup=warmup, status=None)
            stats = summary.stats
            if summary.stopped_by in ("SIGINT", "SIGTERM"):
                raise KeyboardInterrupt
            if summary.error:
                raise EdgevosError(f"{seq.name}: {summary.error}")
            start, n, span = _steady_window(stats)
            windows.append((stats.records[start].t_end, stats.records[-1].t_end) if n else None)
            steady += stats.steady()
            for rec in stats.steady():
                calls = sink.calls.get(rec.index, {})
                for k, ms in rec.stage_ms.items():
                    nc = calls.get(k, 1 if counter is None else 0)
                    if nc:
                        per_call.setdefault(k, []).append(ms / nc)
                        calls_per_frame.setdefault(k, []).append(nc)
            frames += len(stats)
            n_steady, seconds = n_steady + n, seconds + span
            j = f = None
            if all(g is not None for g in gts) and len(gts) >= 3:
                preds = [sink.masks.get(i, np.zeros_like(first)) for i in range(len(gts))]
                ev = evaluate_sequence(gts, preds)["stats"]
                js = [s["J-Mean"] for s in ev.values()]
                fs = [s["F-Mean"] for s in ev.values()]
                j_all += js
                f_all += fs
                j, f = float(np.mean(js)), float(np.mean(fs))
            per_seq.append({"sequence": seq.name, "frames": len(stats), "fps": summary.fps,
                            "reuse_rate": summary.reuse_rate, "J": j, "F": f})
            if status:
                status(f"{seq.name}: {summary.fps or 0:.1f} FPS")
    finally:
        if power is not None:
            power.stop()
    reused = [r.reused for r in steady if r.reused is not None]
    stages = []
    for r in steady:
        for k in r.stage_ms:
            if k not in stages:
                stages.append(k)
    jm = float(np.mean(j_all)) if j_all else None
    fm = float(np.mean(f_all)) if f_all else None
    row = {
        "frames": frames,
        "steady_frames": n_steady,
        "fps": n_steady / seconds if seconds > 0 else None,
        "reuse_rate": sum(reused) / len(reused) if reused else None,
        "J&F": (jm + fm) / 2 if jm is not None else None,
        "J": jm,
        "F": fm,
        "latency_ms": {"e2e": percentiles([r.e2e_ms for r in steady]), "step": percentiles([r.step_ms for r in steady])},
        "stage_ms": {k: percentiles([r.stage_ms.get(k) for r in steady]) for k in stages},
        "stage_runs": {k: sum(1 for r in steady if k in r.stage_ms) / max(len(steady), 1) for k in stages},
        # backend stages only: latency of one call, and calls per frame when the stage runs (per object)
        "stage_call_ms": {k: percentiles(v) for k, v in per_call.items() if counter is None or k in counter.counts},
        "stage_calls_per_frame": {k: float(np.mean(v)) for k, v in calls_per_frame.items()
                                  if counter is None or k in counter.counts},
        "sequences": per_seq,
        "avg_watts": None,
        "energy_per_frame_j": None,
        "power_source": None,
    }
    if power is not None and power.available:
        energy, secs = 0.0, 0.0
        for w in windows:
            if w is None:
                continue
            s = power.summary(t0=w[0], t1=w[1])
            if s:
                energy, secs = energy + s["energy_j"], secs + s["seconds"]
        if secs > 0 and n_steady:
            row.update(avg_watts=energy / secs, energy_per_frame_j=energy / n_steady,
                       power_source=(power.summary() or {}).get("source"))
    return row


# ----------------------------------------------------------------------------- main
def _jetson_warning(device: dict) -> Optional[str]:
    j = device.get("jetson", {})
    if j.get("is_jetson") and j.get("jetson_clocks") != "on":
        return ("WARNING: jetson_clocks is not on: clocks follow the load, so FPS is lower and noisier than the "
                "board can do. For benchmarking run 'sudo nvpmodel -m 0 && sudo jetson_clocks' "
                f"(nvpmodel now: {j.get('nvpmodel', NA)}).")
    return None


def benchmark(source: str, out, *, family: str = "gfrtm", backend: str = "torch,onnxruntime",
              precision: str = "fp32,int8-cpu", tau="1,0.7", weights: str = "default", input_size="256x448",
              sequences: Optional[str] = None, frames: Optional[int] = None, warmup: int = 5,
              threads: Optional[int] = None, init_mask: Optional[str] = None, max_reuse: Optional[int] = None,
              calib: str = "test://", rebuild: bool = False, measure_roofline: bool = True,
              measure_power: bool = True) -> dict:
    """The benchmark matrix: family[:preset] x backend x precision x tau (what ``edgevos bench`` does).

    Args:
        source: DAVIS-layout folder, a video file (+ ``init_mask``), ``test://`` or ``davis://ROOT``.
        out: output folder (results.json, results.md, plots, cached bundles).
        family: comma-separated families, slowfast with a preset: ``"gfrtm,slowfast:3-7"``.
        backend: comma-separated: torch, onnxruntime, tensorrt.
        precision: comma-separated: fp32, int8-cpu, int8-trt (onnxruntime); int8, fp16, best (tensorrt).
        tau: reuse-gate thresholds (a comma-separated string or a list).
        weights: ``"default"``, a checkpoint path, or per family ``"gfrtm=PATH,slowfast=PATH"``.
        input_size: model input ``"HxW"`` or (H, W), multiples of 32.
        sequences: comma-separated sequence names.
        frames: frames per sequence (default: all; 60 for test://).
        warmup: frames per sequence excluded from FPS and latency.
        threads: CPU threads for torch / ONNX Runtime and the GEMM peak.
        init_mask: first-frame mask PNG when ``source`` is a video file.
        max_reuse: force a computed frame after this many reuses.
        calib: calibration source for INT8 exports.
        rebuild: re-export bundles even when cached ones match.
        measure_roofline: time a GEMM peak and write the physical-limit figure.
        measure_power: sample tegrastats/jtop.

    Returns:
        What ``results.json`` holds: run metadata, ``rows`` (one dict per row, with ``status``)
        and ``roofline``.
    """
    import numpy as np

    from edgevos.parsing import parse_taus

    t_start = time.perf_counter()
    families = parse_families(family)
    backends, precisions = split_list(backend), split_list(precision)
    taus = parse_taus(",".join(str(t) for t in tau) if isinstance(tau, (list, tuple)) else tau)
    size = parse_hw(input_size, "--input-size", multiple=32) if isinstance(input_size, str) else tuple(input_size)
    if warmup < 0:
        raise InputError(f"--warmup {warmup} must be >= 0")
    if frames is not None and frames < 3:
        raise InputError(f"--frames {frames}: need at least 3 frames per sequence")
    plan, skipped = matrix(families, backends, precisions, taus)
    if not plan:
        raise InputError(f"no row to run: backends {backends} x precisions {precisions} has no valid pair "
                         f"(torch: fp32; onnxruntime: fp32, int8-cpu, int8-trt; tensorrt: int8, fp16, best)")
    weights = parse_weights(weights, families)
    sequences, has_gt, src_desc = open_bench_sequences(source, split_list(sequences), frames, init_mask)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    from edgevos.doctor import collect

    device = collect()
    warning = _jetson_warning(device)
    if warning:
        log.warning(warning.removeprefix("WARNING: "))
    log.info(f"[bench] device: {device_line(device)}")
    log.info(f"[bench] source: {src_desc}; {len(plan)} rows" + (f" (skipped: {', '.join(skipped)})" if skipped else ""))

    from edgevos.models.registry import get_family
    from edgevos.models.weights import resolve
    from edgevos.runtime.power import PowerMonitor
    from edgevos.runtime.session import Session

    models: Dict[tuple, object] = {}
    bundles: Dict[tuple, Path] = {}
    bundle_errors: Dict[tuple, str] = {}
    ckpt_paths: Dict[tuple, Path] = {}

    def checkpoint(fam, preset):
        """The checkpoint a (family, preset) runs: the user's, or one rebuilt with the preset."""
        key = (fam, preset)
        if key not in ckpt_paths:
            path = resolve(fam, weights[fam])
            if preset is not None:
                from edgevos.models.weights import save_checkpoint

                model = get_model(fam, preset)
                path = save_checkpoint(out / "bundles" / f"{fam}-{preset}.pt", fam, model)
            ckpt_paths[key] = Path(path)
        return ckpt_paths[key]

    def get_model(fam, preset):
        key = (fam, preset)
        if key not in models:
            overrides = {"preset": preset} if preset else {}
            path = resolve(fam, weights[fam])
            try:
                models[key] = get_family(fam).build(weights=str(path), input_size=size, **overrides)
            except RuntimeError as exc:  # e.g. a checkpoint of another preset: layer shapes differ
                first = str(exc).strip().splitlines()[0]
                raise InputError(f"{fam} weights {path} do not fit{' preset ' + preset if preset else ''} "
                                 f"({first}): pass weights trained with it, e.g. --weights {fam}=PATH") from exc
        return models[key]

    # bundles first (child processes), before anything in this process touches GStreamer or runs long
    need: Dict[tuple, List[str]] = {}
    for r in plan:
        if r["backend"] == "torch":
            continue
        p = onnx_precision(r["backend"], r["precision"])
        lst = need.setdefault((r["family"], r["preset"]), ["fp32"])
        if p not in lst:
            lst.append(p)
    for (fam, preset), precs in need.items():
        try:
            bundles[(fam, preset)] = ensure_bundle(out, fam, preset, checkpoint(fam, preset), precs, size,
                                                   calib, threads, rebuild)
        except Exception as exc:  # this family's bundle rows fail; the others run
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            bundle_errors[(fam, preset)] = msg if isinstance(exc, EdgevosError) else f"{type(exc).__name__}: {msg}"
            log.warning(f"[bench] {fam}{':' + preset if preset else ''}: {bundle_errors[(fam, preset)]}")
    # a bundle for the roofline when only torch rows were asked for is not exported: FLOPs come from bundles

    from edgevos.roofline import measure_peak

    peaks_before = None
    if measure_roofline:
        log.info(f"[bench] physical limit: timing a large GEMM ({threads or 'default'} threads)")
        peaks_before = measure_peak(threads)
    rows = []
    interrupted = False
    for k, spec in enumerate(plan, 1):
        r = dict(spec)
        key = (r["family"], r["preset"])
        label = f"{row_label(r)} tau={r['tau']:g}"
        log.info(f"[bench] {k}/{len(plan)} {label}")
        t0 = time.perf_counter()
        try:
            if r["backend"] == "torch":
                model = get_model(*key)
                r["size_mb"] = checkpoint(*key).stat().st_size / 1e6
                r["size_of"] = "checkpoint"
                make = lambda m=model, r=r: Session.from_model(m, tau=r["tau"], threads=threads,  # noqa: E731
                                                               max_reuse=max_reuse, family=r["family"])
            else:
                if key in bundle_errors:
                    raise EdgevosError(bundle_errors[key])
                bdir = bundles[key]
                prec = r["precision"] if r["backend"] == "onnxruntime" else f"trt-{r['precision']}"
                from edgevos.bundle import load_bundle

                b = load_bundle(bdir)
                r["bundle"] = str(bdir)
                r["size_mb"] = stage_files_mb(b, prec) if prec in b.precisions else None
                r["size_of"] = f"{prec} stage files"
                if r["backend"] == "tensorrt" and prec not in b.precisions:
                    b = build_engines(bdir, r["precision"])
                    r["size_mb"] = stage_files_mb(b, prec)
                make = lambda r=r, bdir=bdir: Session.from_bundle(  # noqa: E731
                    bdir, backend=r["backend"], precision=r["precision"], tau=r["tau"], threads=threads,
                    max_reuse=max_reuse)
            power = None if not measure_power else PowerMonitor()
            r.update(run_row(make, sequences, warmup, power=power))
            r["status"] = "ok"
        except KeyboardInterrupt:
            r["status"] = "interrupted"
            interrupted = True
        except Exception as exc:  # a failing row is recorded, the matrix goes on
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            r["status"] = f"error: {msg}" if isinstance(exc, EdgevosError) else f"error: {type(exc).__name__}: {msg}"
        r["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(r)
        if r["status"] == "ok":
            log.info(f"[bench]     {r['fps'] or float('nan'):.2f} FPS, reuse {fmt_value(r['reuse_rate'], '{:.2f}')}, "
                     f"J&F {fmt_value(r['J&F'], scale=100)} ({r['seconds']:.0f} s)")
        else:
            log.info(f"[bench]     {r['status']}")
        if interrupted:
            break

    roof = None
    if measure_roofline and not interrupted:
        try:
            roof = roofline(rows, bundles, best_peaks(peaks_before, measure_peak(threads)))
        except EdgevosError as exc:
            log.warning(f"[bench] physical-limit figure skipped: {exc}")

    # ------------------------------------------------------------------ write
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    frames_per_seq = [len(s) for s in sequences]
    meta = {
        "date": date,
        "command": "edgevos bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:]),
        "source": source,
        "source_description": src_desc,
        "ground_truth": has_gt,
        "sequences": [s.name for s in sequences],
        "frames_per_sequence": frames_per_seq,
        "frames_total": int(np.sum(frames_per_seq)),
        "warmup_per_sequence": warmup,
        "threads": threads,
        "input_size": list(size),
        "weights": {f: str(w) for f, w in weights.items()},
        "skipped": skipped,
        "device": device,
        "device_summary": device_line(device),
        "warning": warning,
        "interrupted": interrupted,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    (out / "results.json").write_text(json.dumps({**meta, "rows": rows, "roofline": roof}, indent=2, default=str))
    head, body = table_rows(rows)
    mhead, mbody = table_rows(rows, status_width=200)
    shead, sbody = stage_table_rows(rows)
    png = plot_fps_jf(rows, out / "fps_vs_jf.png",
                      title=f"FPS vs J&F on {src_desc.split(' (')[0]} ({sum(frames_per_seq)} frames)")
    md = [f"# edgevos bench, {date}", "",
          f"* device: {device_line(device)}",
          f"* source: {src_desc}; frames per sequence {frames_per_seq}, first {warmup} of each excluded "
          f"from FPS/latency; input {size[0]}x{size[1]}; threads {threads or 'default'}",
          f"* weights: {', '.join(f'{f}={w}' for f, w in weights.items())}",
          "* size MB: the stage files a row loads (checkpoint for torch); latency: end to end per frame, "
          "steady state; W and J/frame from tegrastats/jtop (n/a where power cannot be read)", ""]
    if warning:
        md += [f"> {warning}", ""]
    md += [format_md(mhead, mbody), "", "## Per-stage latency (ms per frame, steady state; 'ran' = share of frames running the stage, 'calls' = calls per such frame, one per object for per-object stages)", "",
           format_md(shead, sbody), ""]
    if png:
        md += ["![FPS vs J&F](fps_vs_jf.png)", ""]
    print()
    print(f"edgevos bench: {src_desc}; {device_line(device)}; {date}")
    print(format_text(head, body))
    print()
    print(format_text(shead, sbody))
    if roof:
        from edgevos.roofline import plot as plot_roof

        (out / "roofline.json").write_text(json.dumps(roof, indent=2))
        rhead, rbody = roofline_table(roof)
        rpng = plot_roof(roof["entries"], roof["peaks"], out / "roofline.png",
                         title=f"per-stage GFLOP/s vs measured GEMM peak ({(device.get('cpu') or {}).get('model', '')})")
        peaks = ", ".join(f"{k} {v['gflops']:.0f} GFLOP/s ({v['how']}, {v['threads']} threads)"
                          for k, v in roof["peaks"].items() if v)
        md += ["## Physical limit", "", f"Measured peak in this run: {peaks}. {roof['note']}.", "",
               format_md(rhead, rbody), ""]
        if rpng:
            md += ["![roofline](roofline.png)", ""]
        print()
        print(f"physical limit (peak: {peaks})")
        print(format_text(rhead, rbody))
    (out / "results.md").write_text("\n".join(md))
    print()
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}"
          + (f", {png}" if png else " (no FPS-vs-J&F plot: no row with J&F)")
          + (f", {out / 'roofline.png'}" if roof else ""))
    if warning:
        log.warning(warning.removeprefix("WARNING: "))
    return {**meta, "rows": rows, "roofline": roof}


def main(args) -> int:
    results = benchmark(args.source, args.out, family=args.family, backend=args.backend, precision=args.precision,
                        tau=args.tau, weights=args.weights, input_size=args.input_size, sequences=args.sequences,
                        frames=args.frames, warmup=args.warmup, threads=args.threads, init_mask=args.init_mask,
                        max_reuse=args.max_reuse, calib=args.calib, rebuild=args.rebuild,
                        measure_roofline=not args.no_roofline, measure_power=not args.no_power)
    if results["interrupted"]:
        return 130
    return 0 if any(r["status"] == "ok" for r in results["rows"]) else 1
