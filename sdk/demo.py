"""``edgevos demo``: the quick-start job, on embedded defaults only.

1. generates a clip with exact ground truth (textured objects moving, scaling,
   occluding) and encodes it to H.264 MP4 with GStreamer;
2. exports the shipped G-FRTM-fast weights to a bundle: per-stage ONNX (FP32,
   checked against PyTorch) and INT8 for the CPU, calibrated on other
   generated sequences, with a parity report;
3. runs the GStreamer runtime on the MP4 (decode -> Session with ONNX Runtime
   INT8 -> overlay MP4 + DAVIS-layout masks) at tau = 1 (plain FRTM-fast) and
   tau = 0.85 (reuse gate on, the shipped operating point; reuse runs capped at the gap the
   weights' gate was trained on);
4. prints measured FPS, reuse rate and J&F (scored against the ground truth
   with the DAVIS protocol) and writes ``demo.json``.

Nothing is downloaded and nothing outside the package is read.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from edgevos.parsing import number, threads_arg

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--weights", default="default", help="shipped weights name or checkpoint path")
    p.add_argument("--frames", type=number(int, 1), default=90, help="frames in the generated clip (default 90)")
    p.add_argument("--clip-size", default="240x432", help="generated clip HxW (default 240x432)")
    p.add_argument("--input-size", default=None, help="model input HxW (default: the size the weights were trained at)")
    p.add_argument("--tau", default="1,0.85", help="reuse-gate thresholds to run (default 1,0.85)")
    p.add_argument("--max-reuse", type=number(int, 0), default=None,
                   help="force a computed frame after this many reuses (default: the longest gap the weights' gate "
                        "was trained on; 0 = never reuse)")
    p.add_argument("--precision", default="int8-cpu", choices=["fp32", "int8-cpu", "int8-trt"])
    p.add_argument("--threads", type=threads_arg(), default=None,
                   help="ONNX Runtime threads (default: 1 when inference is pinned, else all cores)")
    p.add_argument("--pin-inference", metavar="CORES", default="auto",
                   help="Linux: inference on these cores, decoding/encoding/writing on the others (as edgevos run "
                        "--pin-inference); 'auto' (default): the last core with one inference thread when there are "
                        "two or more cores; 'none': no pinning")
    p.add_argument("--seed", type=number(int, 0), default=7)
    p.add_argument("--rebuild", action="store_true", help="re-export the bundle even if one exists")


def make_clip(out: Path, frames: int, size, seed: int):
    """A generated sequence and its H.264 MP4 (encoded by the runtime's GStreamer sink)."""
    from edgevos.data import SyntheticConfig, make_sequence
    from edgevos.runtime.sinks import open_sink

    h, w = size
    seq = make_sequence(SyntheticConfig(height=h, width=w, num_frames=frames, num_objects=2, seed=seed,
                                        speed=2.5, name="demo"))
    path = out / "clip.mp4"
    with open_sink(f"file://{path.resolve()}", fps=25, overlay=False) as sink:
        for i in range(len(seq)):
            sink.write(i, seq.frame(i), None)
    return seq, path


def _same_model(bundle_config: dict, weights: str) -> bool:
    """The bundle was exported from a checkpoint with ``weights``' config (input size aside):
    a weights update (e.g. a new target-model setting) re-exports instead of reusing a stale bundle."""
    import json

    from edgevos.models.weights import load_checkpoint

    want = dict(load_checkpoint("gfrtm", weights).get("config", {}))
    have = dict(bundle_config)
    for c in (want, have):
        c.pop("input_size", None)
    return json.loads(json.dumps(want)) == json.loads(json.dumps({k: have.get(k) for k in want}))


def _weights_digest(weights: str) -> str:
    from edgevos.bundle import sha256
    from edgevos.models.weights import resolve

    return sha256(resolve("gfrtm", weights))


def _same_weights_file(out: Path, weights: str) -> bool:
    """``out/bundle`` was exported from a file with ``weights``' bytes (its sha256 is kept beside the
    bundle): new weights with an unchanged config re-export too."""
    marker = out / "bundle.weights.sha256"
    return marker.is_file() and marker.read_text().strip() == _weights_digest(weights)


def ensure_bundle(out: Path, weights: str, input_size, precision: str, rebuild: bool) -> Path:
    """``out/bundle``: reused when it holds ``precision`` at ``input_size`` and was exported from
    ``weights`` (same config, same file bytes), else exported (in a child process: this one has
    initialised GStreamer)."""
    bundle = out / "bundle"
    marker = out / "bundle.weights.sha256"
    if bundle.exists() and not rebuild:
        from edgevos.errors import BundleError
        from edgevos.bundle import load_bundle

        try:
            b = load_bundle(bundle)
            if precision in b.precisions and tuple(b.input_size) == tuple(input_size) \
                    and _same_model(b.config, weights) and _same_weights_file(out, weights):
                log.info(f"[demo] reusing bundle {bundle}")
                return bundle
        except BundleError as exc:
            log.info(f"[demo] rebuilding bundle: {exc}")
    if bundle.exists():
        import shutil

        shutil.rmtree(bundle)
    from edgevos.export.exporter import export_bundle

    marker.unlink(missing_ok=True)
    made = export_bundle(bundle, "gfrtm", weights=weights, precisions=sorted({"fp32", precision}), calib="test://",
                         calib_frames=48, input_size=input_size, heldout_frames=20, progress=False, isolate=True)
    marker.write_text(_weights_digest(weights) + "\n")
    return made


def _pinning(text, threads):
    """(cores to pin inference to or None, inference threads) for --pin-inference."""
    if not text or text == "none":
        return None, threads
    import os

    from edgevos.runtime.affinity import parse_cores

    if text == "auto":
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(allowed) < 2 or not os.path.isdir("/proc/self/task") or (threads or 1) > 1:
            return None, threads
        return {allowed[-1]}, 1
    return parse_cores(text), threads


def main(args) -> int:
    import numpy as np

    from edgevos.data import read_mask
    from edgevos.parsing import check_writable, parse_hw, parse_taus
    from edgevos.metrics import evaluate_sequence
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.session import Session
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    # every value and the output folder are checked before the clip, the export and the runs
    taus = parse_taus(args.tau)
    clip_size = parse_hw(args.clip_size, "--clip-size")
    size = parse_hw(args.input_size, "--input-size", multiple=32) if args.input_size else None
    pin, threads = _pinning(args.pin_inference, args.threads)
    if pin:
        from edgevos.runtime.affinity import CoreSplit

        CoreSplit(pin)  # the cores exist and leave one for I/O
    out = check_writable(args.out, "--out", directory=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log.info("[demo] 1/3 generating a clip with ground truth and encoding it to MP4")
    seq, clip = make_clip(out, args.frames, clip_size, args.seed)
    log.info(f"[demo]     {clip} ({len(seq)} frames, {seq.frame(0).shape[1]}x{seq.frame(0).shape[0]}, objects {seq.object_ids})")
    log.info(f"[demo] 2/3 exporting G-FRTM-fast ({args.weights}) to ONNX + {args.precision}")
    if size is None:
        from edgevos.models.weights import load_checkpoint

        size = tuple(load_checkpoint("gfrtm", args.weights)["config"]["input_size"])
    bundle = ensure_bundle(out, args.weights, size, args.precision, args.rebuild)
    log.info(f"[demo] 3/3 GStreamer runtime: file://{clip.name} -> overlay MP4 + masks, ONNX Runtime {args.precision}")
    gts = [seq.mask(i) for i in range(len(seq))]
    rows = []
    if pin:
        log.info(f"[demo]     inference pinned to core(s) {sorted(pin)}, {threads} thread(s); I/O on the others")
    for tau in taus:
        tag = f"tau{tau:g}"
        split = None
        if pin:
            from edgevos.runtime.affinity import CoreSplit

            split = CoreSplit(pin)
        make = lambda: Session.from_bundle(bundle, backend="onnxruntime", precision=args.precision,  # noqa: E731
                                           tau=tau, threads=threads, max_reuse=args.max_reuse)
        session = split.build(make) if split is not None else make()
        source = open_source(f"file://{clip.resolve()}")
        sinks = [open_sink(f"file://{(out / f'overlay_{tag}.mp4').resolve()}", fps=25),
                 open_sink(f"masks://{(out / f'masks_{tag}').resolve()}?overwrite=1")]  # the demo's own folder
        summary = run_pipeline(source, sinks, session, first_mask=gts[0], warmup=5, status=None, core_split=split)
        if summary.error:
            log.warning(f"[demo] run at tau={tau:g} ended with an error: {summary.error}")
        masks_dir = out / f"masks_{tag}"
        preds = []
        for i in range(len(seq)):
            p = masks_dir / f"{i:05d}.png"
            preds.append(read_mask(p) if p.is_file() else np.zeros_like(gts[0]))
        ev = evaluate_sequence(gts, preds)
        st = ev["stats"]
        jm = float(np.mean([s["J-Mean"] for s in st.values()]))
        fm = float(np.mean([s["F-Mean"] for s in st.values()]))
        rows.append({"tau": tau, "precision": args.precision, "frames": summary.frames,
                     "fps": summary.fps, "reuse_rate": summary.reuse_rate,
                     "latency_ms_p50": summary.latency_ms.get("p50"),
                     "J": jm, "F": fm, "J&F": (jm + fm) / 2, "overlay": str(out / f"overlay_{tag}.mp4"),
                     "masks": str(masks_dir)})
    print()
    print(f"edgevos demo: G-FRTM-fast ({args.weights}), bundle {bundle}, ONNX Runtime {args.precision}")
    head = f"{'tau':>5} {'frames':>6} {'FPS':>7} {'reuse':>6} {'J':>6} {'F':>6} {'J&F':>6}"
    print(head)
    print("-" * len(head))
    for r in rows:
        fps = r["fps"] if r["fps"] is not None else float("nan")
        reuse = r["reuse_rate"] if r["reuse_rate"] is not None else float("nan")
        print(f"{r['tau']:>5g} {r['frames'] or 0:>6} {fps:7.1f} {reuse:6.2f} {r['J'] * 100:6.1f} {r['F'] * 100:6.1f} {r['J&F'] * 100:6.1f}")
    if len(rows) > 1 and rows[0]["fps"] and rows[-1]["fps"]:
        print(f"speed-up tau={rows[-1]['tau']:g} vs tau={rows[0]['tau']:g}: {rows[-1]['fps'] / rows[0]['fps']:.2f}x "
              f"(J&F {100 * (rows[-1]['J&F'] - rows[0]['J&F']):+.1f} points)")
    (out / "demo.json").write_text(json.dumps({"rows": rows, "clip": str(clip), "bundle": str(bundle),
                                               "pin_inference": sorted(pin) if pin else None, "threads": threads,
                                               "seconds": time.perf_counter() - t0}, indent=2))
    print(f"wrote {out / 'demo.json'}; overlays and masks in {out}")
    worst = min(r["J"] for r in rows)
    if worst < 0.5:
        print(f"[demo] FAILED: J = {worst:.2f} < 0.5: the shipped weights do not segment the clip")
        return 1
    return 0
