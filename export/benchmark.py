"""Export benchmark: per stage FP32 vs int8-cpu vs int8-trt latency with ONNX Runtime,
file sizes and (for a bundle) end-to-end J&F per precision.

    python -m edgevos.export.benchmark --resnet 256x448          # ResNet18-scale 2D net + Conv3d
    python -m edgevos.export.benchmark --bundle DIR [--heldout test://]

``--resnet`` builds a ResNet18 encoder + small decoder with random weights (and a
Conv3d temporal block), exports it, quantizes it in both flavours and in both
ONNX Runtime formats for int8-cpu (QDQ and QOperator), and times everything on
one thread: this is the measurement behind :data:`edgevos.export.quantize.CPU_FORMAT`.
Prints a table and writes JSON (``--json``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgevos.errors import require
from edgevos.parsing import parse_hw
from edgevos.stages import StageSpec, TensorSpec


def resnet_stages(h: int, w: int):
    """(modules, specs): 'encoder2d' = ResNet18 + 3-level decoder; 'temporal3d' = causal Conv3d block."""
    torch = require("torch", "export")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.down is None else self.down(x)
            y = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(y)) + idt)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            chans = [64, 64, 128, 256, 512]
            self.layers = nn.ModuleList(
                nn.Sequential(Block(chans[i], chans[i + 1], 1 if i == 0 else 2), Block(chans[i + 1], chans[i + 1], 1)) for i in range(4)
            )
            self.lat = nn.ModuleList(nn.Conv2d(c, 64, 1) for c in (512, 256, 128, 64))
            self.ref = nn.ModuleList(nn.Sequential(nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU()) for _ in range(4))
            self.out = nn.Conv2d(64, 1, 3, 1, 1)

        def forward(self, image):
            x = self.stem(image)
            feats = []
            for layer in self.layers:
                x = layer(x)
                feats.append(x)
            y = None
            for f, lat, ref in zip(feats[::-1], self.lat, self.ref):
                z = lat(f)
                if y is not None:
                    z = z + nn.functional.interpolate(y, size=z.shape[-2:], mode="bilinear", align_corners=False)
                y = ref(z)
            return self.out(y)

    class Temporal(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv3d(64, 64, (3, 3, 3), 1, (0, 1, 1))
            self.c2 = nn.Conv3d(64, 64, (3, 3, 3), 1, (0, 1, 1))

        def forward(self, clip):  # (1, 64, 5, H/8, W/8) -> (1, 64, 1, H/8, W/8)
            return self.c2(torch.relu(self.c1(clip)))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():  # non-trivial BN statistics so the folded weights are realistic
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    specs = [
        StageSpec("encoder2d", (TensorSpec("image", (1, 3, h, w)),), (TensorSpec("logits", (1, 1, h // 4, w // 4)),)),
        StageSpec("temporal3d", (TensorSpec("clip", (1, 64, 5, h // 8, w // 8)),), (TensorSpec("out", (1, 64, 1, h // 8, w // 8)),)),
    ]
    return {"encoder2d": net, "temporal3d": Temporal().eval()}, specs


def time_session(path, feeds, threads: int = 1, repeat: int = 10, warmup: int = 2) -> float:
    """Median latency in ms of one ORT CPU session run."""
    ort = require("onnxruntime", "export")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _corr(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def bench_resnet(h: int, w: int, threads: int = 1, repeat: int = 10, calib: int = 8, out_dir=None) -> dict:
    torch = require("torch", "export")
    torch.set_num_threads(threads)
    from edgevos.export.onnx_export import export_stages
    from edgevos.export.quantize import quantize_stage

    modules, specs = resnet_stages(h, w)
    tmp = tempfile.TemporaryDirectory(prefix="edgevos-bench-") if out_dir is None else None
    out = Path(out_dir or tmp.name)
    ort = require("onnxruntime", "export")
    paths = export_stages(modules, specs, out)
    rows = []
    for spec in specs:
        rng = np.random.default_rng(1)
        feeds = [{n: rng.standard_normal(t.shape).astype(np.float32) for n, t in zip(spec.input_names, spec.inputs)} for _ in range(calib)]
        test = spec.dummy_feeds(seed=99)
        variants = {"fp32": paths[spec.name]}
        for flavour, fmt in (("int8-cpu", "qdq"), ("int8-cpu", "qoperator"), ("int8-trt", None)):
            key = flavour if fmt is None else f"{flavour}-{fmt}"
            p = out / f"{spec.name}.{key}.onnx"
            info = quantize_stage(paths[spec.name], p, spec, feeds, flavour, cpu_format=fmt)
            variants[key] = p if info["quantized"] else paths[spec.name]
        ref = ort.InferenceSession(str(paths[spec.name]), providers=["CPUExecutionProvider"]).run(None, test)[0]
        base = None
        for key, p in variants.items():
            ms = time_session(p, test, threads, repeat)
            base = base or ms
            y = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, test)[0]
            rows.append(
                {
                    "stage": spec.name,
                    "variant": key,
                    "ms": round(ms, 2),
                    "speedup": round(base / ms, 2),
                    "size_mb": round(Path(p).stat().st_size / 1e6, 2),
                    "corr_vs_fp32": round(_corr(ref, y), 4),
                }
            )
    result = {"input_size": [h, w], "threads": threads, "repeat": repeat, "rows": rows}
    if tmp is not None:
        tmp.cleanup()
    return result


def print_rows(rows, cols) -> None:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(wd) for c, wd in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(wd) for c, wd in zip(cols, widths)))


def bench_bundle(bundle_dir, threads: int = 1, repeat: int = 10) -> dict:
    """Per stage and precision in a bundle: ORT latency (dummy feeds) and file size."""
    from edgevos.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    rows = []
    for spec in bundle.specs:
        feeds = spec.dummy_feeds(seed=0)
        base = None
        for precision in bundle.precisions:
            p = bundle.stage_path(spec.name, precision)
            if p is None or p.suffix != ".onnx":
                continue
            ms = time_session(p, feeds, threads, repeat)
            base = base or ms
            rows.append(
                {
                    "stage": spec.name,
                    "precision": precision,
                    "ms": round(ms, 2),
                    "speedup": round(base / ms, 2),
                    "size_mb": round(p.stat().st_size / 1e6, 2),
                }
            )
    return {"bundle": str(bundle_dir), "threads": threads, "rows": rows}


def _session(path, threads: int):
    ort = require("onnxruntime", "export")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def interleaved_ms(paths, feeds, threads: int = 1, repeat: int = 5, rounds: int = 5) -> list:
    """Median latency (ms) of each ONNX file on the same feeds, timed round-robin so that
    machine load affects all alike (median over rounds of per-round medians)."""
    sessions = [_session(p, threads) for p in paths]
    for s in sessions:
        s.run(None, feeds)
    per = [[] for _ in sessions]
    for _ in range(rounds):
        for k, s in enumerate(sessions):
            t = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                s.run(None, feeds)
                t.append((time.perf_counter() - t0) * 1e3)
            per[k].append(statistics.median(t))
    return [statistics.median(v) for v in per]


def bench_compare(before_dir, after_dir, threads: int = 1, repeat: int = 10, rounds: int = 7) -> dict:
    """Two bundles of the same model timed in one run, interleaved: every round times each
    (bundle, stage, precision) session ``repeat`` times; a row's ms is the median over rounds
    of the per-round medians, and its speed-up is against the same bundle's fp32 in the same
    rounds, so machine load shifts both alike.  Also total file size per bundle and precision."""
    from edgevos.bundle import load_bundle

    bundles = {"before": load_bundle(before_dir), "after": load_bundle(after_dir)}
    jobs = []
    for tag, b in bundles.items():
        for spec in b.specs:
            feeds = spec.dummy_feeds(seed=0)
            for precision in b.precisions:
                p = b.stage_path(spec.name, precision)
                if p is not None and p.suffix == ".onnx":
                    jobs.append({"bundle": tag, "stage": spec.name, "precision": precision, "path": p,
                                 "feeds": feeds, "sess": _session(p, threads), "ms": []})
    for job in jobs:  # warm-up
        for _ in range(2):
            job["sess"].run(None, job["feeds"])
    for _ in range(rounds):
        for job in jobs:
            t = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                job["sess"].run(None, job["feeds"])
                t.append((time.perf_counter() - t0) * 1e3)
            job["ms"].append(statistics.median(t))
    med = {(j["bundle"], j["stage"], j["precision"]): statistics.median(j["ms"]) for j in jobs}
    rows = []
    for j in jobs:
        key = (j["bundle"], j["stage"], j["precision"])
        base = med.get((j["bundle"], j["stage"], "fp32"))
        rows.append({"bundle": j["bundle"], "stage": j["stage"], "precision": j["precision"],
                     "ms": round(med[key], 3), "speedup": round(base / med[key], 2) if base else None,
                     "size_mb": round(j["path"].stat().st_size / 1e6, 3)})
    sizes = {}
    for tag, b in bundles.items():
        for precision in b.precisions:
            paths = [b.stage_path(s.name, precision) for s in b.specs]
            sizes[f"{tag} {precision}"] = round(sum(p.stat().st_size for p in paths if p is not None) / 1e6, 3)
    return {"before": str(before_dir), "after": str(after_dir), "threads": threads, "repeat": repeat,
            "rounds": rounds, "rows": rows, "size_mb": sizes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgevos.export.benchmark", description=__doc__.splitlines()[0])
    ap.add_argument("--resnet", metavar="HxW", help="benchmark a ResNet18-scale net at this input size")
    ap.add_argument("--bundle", help="benchmark the stages of an exported bundle")
    ap.add_argument("--compare", metavar="BEFORE", help="with --bundle: time this other bundle in the same run, interleaved")
    ap.add_argument("--rounds", type=int, default=7, help="with --compare: interleaved rounds (default 7)")
    ap.add_argument("--heldout", help="with --bundle: also end-to-end J&F per precision on these sequences (DIR or test://)")
    ap.add_argument("--heldout-sequences", default="", help="comma-separated sequence names")
    ap.add_argument("--frames", type=int, default=30, help="max frames per held-out sequence")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if not args.resnet and not args.bundle:
        ap.error("give --resnet HxW or --bundle DIR")
    results = {}
    if args.resnet:
        h, w = parse_hw(args.resnet, "--resnet")
        r = bench_resnet(h, w, args.threads, args.repeat)
        print(f"ResNet18-scale, {h}x{w}, ONNX Runtime CPU, {args.threads} thread(s), median of {args.repeat}")
        print_rows(r["rows"], ["stage", "variant", "ms", "speedup", "size_mb", "corr_vs_fp32"])
        results["resnet"] = r
    if args.bundle and args.compare:
        r = bench_compare(args.compare, args.bundle, args.threads, args.repeat, args.rounds)
        print(f"before {args.compare} / after {args.bundle}, ONNX Runtime CPU, {args.threads} thread(s), "
              f"interleaved, median of {args.rounds} rounds x {args.repeat}")
        print_rows(r["rows"], ["bundle", "stage", "precision", "ms", "speedup", "size_mb"])
        print("total size (MB): " + ", ".join(f"{k} {v}" for k, v in r["size_mb"].items()))
        results["compare"] = r
    elif args.bundle:
        r = bench_bundle(args.bundle, args.threads, args.repeat)
        print(f"bundle {args.bundle}, ONNX Runtime CPU, {args.threads} thread(s)")
        print_rows(r["rows"], ["stage", "precision", "ms", "speedup", "size_mb"])
        results["bundle"] = r
        if args.heldout:
            from edgevos.export.parity import end_to_end_from_bundle, format_report

            e2e = end_to_end_from_bundle(
                args.bundle, args.heldout, [s for s in args.heldout_sequences.split(",") if s], args.frames, args.threads
            )
            print(format_report({"end_to_end": e2e}))
            results["end_to_end"] = e2e
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
