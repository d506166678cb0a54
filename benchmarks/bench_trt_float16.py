"""SNR cost of FP16 float compute in a bundle's int8-trt graphs (edgevos.export.trt_float16).

Runs the step program on the bundle's FP32 ONNX to record real stage feeds, then per quantized
stage compares with ONNX Runtime on the CPU: the plain int8-trt graph, its FP16-float form
(emulated: FP32 kernels on values rounded to FP16, since ONNX Runtime's CPU kernels lack FP16
Conv/Resize) and the FP32 graph.  Prints the worst SNR per output over the recorded feeds.

    python benchmarks/bench_trt_float16.py --bundle BUNDLE [--source test:// --sequence NAME --json out.json]
"""
import argparse
import json

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--source", default="test://")
    ap.add_argument("--sequence", default=None, help="sequence of --source to run (default: its last)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--json")
    args = ap.parse_args()
    import onnx
    import onnxruntime as ort

    from edgevos.backend import open_backend
    from edgevos.bundle import load_bundle
    from edgevos.export.calibrate import RecordingBackend, open_sequences
    from edgevos.export.trt_float16 import emulate_float16, float16_between_qdq, snr_db
    from edgevos.models.registry import get_family

    b = load_bundle(args.bundle)
    fam = get_family(b.manifest["family"])
    rec = RecordingBackend(open_backend("onnxruntime", b.root, "fp32", threads=1), max_samples_per_stage=4, seed=0)
    seqs = open_sequences(args.source, [args.sequence] if args.sequence else ())
    seq = [s for s in seqs if args.sequence in (None, s.name)][-1]
    for tau in (1.0, 0.0):  # computed and reused frames: every stage runs
        prog = fam.make_program(rec, b.manifest["config"], tau=tau)
        prog.start(seq.frame(0), seq.mask(0))
        for i in range(1, min(len(seq), args.frames)):
            prog.step(seq.frame(i))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    rows = []
    print(f"{'stage':14s} {'output':8s} {'fp16 vs int8':>12s} {'int8 vs fp32':>12s} {'fp16 vs fp32':>12s}  fp16 ops / kept fp32")
    for spec in b.specs:
        model = onnx.load(str(b.stage_path(spec.name, "int8-trt")))
        if not any(n.op_type == "QuantizeLinear" for n in model.graph.node):
            continue
        plain = model.SerializeToString()
        report = float16_between_qdq(model)
        sess = {k: ort.InferenceSession(m, so, providers=["CPUExecutionProvider"]) for k, m in (
            ("fp32", str(b.stage_path(spec.name, "fp32"))), ("int8", plain),
            ("fp16", emulate_float16(model).SerializeToString()))}
        worst = {}
        for feed in rec.samples[spec.name]:
            f = {k: np.asarray(feed[k]) for k in spec.input_names}
            out = {k: s.run(None, f) for k, s in sess.items()}
            for j, o in enumerate(spec.output_names):
                pairs = ((out["fp16"][j], out["int8"][j]), (out["int8"][j], out["fp32"][j]), (out["fp16"][j], out["fp32"][j]))
                w = worst.setdefault(o, [np.inf] * 3)
                for k, (test, ref) in enumerate(pairs):
                    w[k] = min(w[k], snr_db(ref, test))
        for o, w in worst.items():
            print(f"{spec.name:14s} {o:8s} " + " ".join(f"{v:12.1f}" for v in w)
                  + f"  {len(report['fp16'])} / {len(report['kept_fp32'])}")
            rows.append({"stage": spec.name, "output": o, "snr_fp16_vs_int8": w[0], "snr_int8_vs_fp32": w[1],
                         "snr_fp16_vs_fp32": w[2], "fp16_ops": len(report["fp16"]), "kept_fp32": report["kept_fp32"]})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
