"""How close each stage runs to the hardware: FLOPs from the graph vs a measured peak.

* :func:`count_flops` counts the multiply-accumulates of the compute-heavy ONNX
  operators of one stage file after shape inference (``Conv``,
  ``ConvTranspose``, ``Gemm``, ``MatMul`` and their integer forms
  ``QLinearConv``, ``ConvInteger``, ``QLinearMatMul``, ``MatMulInteger``; a
  Q/DQ-wrapped ``Conv`` is an ordinary ``Conv`` node) and returns FLOPs = 2 x MACs.
  Element-wise operators, pooling and resizing are not counted: they are memory
  bound, and leaving them out makes the figure a lower bound of the arithmetic done.
* :func:`measure_peak` times large GEMMs in this process on the stages' thread
  count: FP32 with torch and ONNX Runtime, INT8 with ``torch._int_mm`` and ONNX
  Runtime ``MatMulInteger``; the best of each is the peak.
* :func:`stage_rows` joins FLOPs with measured per-stage latency into achieved
  GFLOP/s and the fraction of the peak.

Needs ``onnx`` (``pip install 'edgevos[export]'``); torch is optional.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from edgevos.errors import require

# op type -> (index of the data input, index of the weight input)
_CONV = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}


def _shape_table(model) -> Dict[str, List[Optional[int]]]:
    onnx = require("onnx", "export", "counting FLOPs of ONNX stages")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # keep what the exporter recorded
        inferred = model
    g = inferred.graph
    shapes: Dict[str, List[Optional[int]]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    for node in g.node:  # Constant weights
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t is not None:
                    shapes[node.output[0]] = list(a.t.dims)
    # a weight seen through DequantizeLinear keeps the quantized tensor's shape
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.output[0] not in shapes and node.input[0] in shapes:
            shapes[node.output[0]] = shapes[node.input[0]]
    return shapes, inferred


def _known(shape) -> bool:
    return shape is not None and len(shape) > 0 and all(isinstance(d, int) and d > 0 for d in shape)


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return a.i if a.type == a.INT else (list(a.ints) if a.ints else default)
    return default


def count_flops(onnx_path) -> dict:
    """``{"flops": int, "by_op": {op: flops}, "nodes": counted, "unresolved": [node names]}`` for one ONNX file."""
    onnx = require("onnx", "export", "counting FLOPs of ONNX stages")
    model = onnx.load(str(onnx_path))
    shapes, graph_model = _shape_table(model)
    by_op: Dict[str, int] = {}
    unresolved: List[str] = []
    counted = 0
    for node in graph_model.graph.node:
        op = node.op_type
        macs = None
        if op in _CONV:
            _, wi = _CONV[op]
            w = shapes.get(node.input[wi]) if len(node.input) > wi else None
            y = shapes.get(node.output[0])
            if _known(w) and _known(y):
                # y: (N, Cout, *spatial); w: (Cout, Cin/group, *kernel)
                macs = math.prod(y) * math.prod(w[1:])
        elif op == "ConvTranspose":
            x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
            if _known(x) and _known(w):
                # x: (N, Cin, *spatial_in); w: (Cin, Cout/group, *kernel): every input pixel scatters a kernel
                macs = math.prod(x) * math.prod(w[1:])
        elif op == "Gemm":
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if _known(a) and _known(b) and len(a) == 2 and len(b) == 2:
                m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
                n = b[0] if _attr(node, "transB", 0) else b[1]
                macs = m * k * n
        elif op in _MATMUL:
            ai, bi = _MATMUL[op]
            a, b, y = shapes.get(node.input[ai]), shapes.get(node.input[bi]), shapes.get(node.output[0])
            if _known(a) and _known(y):
                macs = math.prod(y) * a[-1]  # every output element is a K-long dot product
        else:
            continue
        if macs is None:
            unresolved.append(node.name or op)
            continue
        counted += 1
        base = {"QLinearConv": "Conv", "ConvInteger": "Conv", "QLinearMatMul": "MatMul", "MatMulInteger": "MatMul"}.get(op, op)
        by_op[base] = by_op.get(base, 0) + 2 * int(macs)
    return {"flops": int(sum(by_op.values())), "by_op": by_op, "nodes": counted, "unresolved": unresolved}


def _best_time(fn, repeat: int, budget_s: float) -> float:
    fn()  # warm-up
    best, t_start = float("inf"), time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - t_start > budget_s:
            break
    return best


def _ort_gemm(n: int, int8: bool, threads: Optional[int]):
    """A one-node ONNX Runtime GEMM (MatMul fp32, or MatMulInteger u8 x s8 -> int32) and its feeds."""
    import numpy as np
    import onnxruntime as ort

    onnx = require("onnx", "export", "building the GEMM peak probe")
    from onnx import TensorProto, helper

    ta, tb = (TensorProto.UINT8, TensorProto.INT8) if int8 else (TensorProto.FLOAT, TensorProto.FLOAT)
    node = helper.make_node("MatMulInteger" if int8 else "MatMul", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", ta, [n, n]),
                                                helper.make_tensor_value_info("b", tb, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32 if int8 else TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    if int8:
        feeds = {"a": rng.integers(0, 255, (n, n), dtype=np.uint8), "b": rng.integers(-128, 127, (n, n), dtype=np.int8)}
    else:
        feeds = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
    return lambda: sess.run(None, feeds)


def measure_peak(threads: Optional[int] = None, size: int = 1024, repeat: int = 8, budget_s: float = 2.0) -> dict:
    """Measured GEMM throughput of this machine now, on ``threads`` threads:
    ``{"fp32": {...}, "int8": {...} or None}``, each ``{"gflops", "how", "threads", "size"}``.

    The best of the GEMMs available: FP32 ``torch.mm`` and ONNX Runtime ``MatMul``
    (numpy's BLAS when neither exists); INT8 ``torch._int_mm`` and ONNX Runtime
    ``MatMulInteger`` (u8 x s8).  Each is the best of ``repeat`` calls.
    """
    import numpy as np

    candidates = {"fp32": [], "int8": []}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        def torch_fp32():
            a, b = torch.randn(size, size), torch.randn(size, size)
            return lambda: torch.mm(a, b)

        def torch_int8():
            n = 2 * size
            a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
            b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
            return lambda: torch._int_mm(a, b)

        candidates["fp32"].append((f"torch.mm {size}^3 fp32", size, torch_fp32, True))
        if hasattr(torch, "_int_mm"):
            candidates["int8"].append((f"torch._int_mm {2 * size}^3 int8", 2 * size, torch_int8, True))
    try:
        import onnxruntime  # noqa: F401

        candidates["fp32"].append((f"onnxruntime MatMul {size}^3 fp32", size, lambda: _ort_gemm(size, False, threads), False))
        candidates["int8"].append((f"onnxruntime MatMulInteger {2 * size}^3 u8s8", 2 * size,
                                   lambda: _ort_gemm(2 * size, True, threads), False))
    except ImportError:
        pass
    if not candidates["fp32"]:
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        candidates["fp32"].append((f"numpy matmul {size}^3 fp32 (BLAS threads)", size, lambda: (lambda: a @ a), False))
    out: dict = {}
    for kind, cands in candidates.items():
        best = None
        for how, n, make, uses_torch in cands:
            old = torch.get_num_threads() if uses_torch else None
            try:
                if uses_torch and threads:
                    torch.set_num_threads(int(threads))
                t = _best_time(make(), repeat, budget_s)
            except Exception:  # an implementation missing on this build: try the next
                continue
            finally:
                if old is not None:
                    torch.set_num_threads(old)
            g = 2 * n ** 3 / t / 1e9
            if best is None or g > best["gflops"]:
                best = {"gflops": g, "how": how, "threads": threads, "size": n}
        out[kind] = best
    return out


def stage_rows(stage_flops: Dict[str, dict], stage_latency: Dict[str, Optional[dict]],
               stage_precision: Dict[str, str], peaks: dict) -> List[dict]:
    """One entry per stage: FLOPs/frame, median latency, achieved GFLOP/s, peak and fraction of it."""
    rows = []
    for stage, fl in stage_flops.items():
        lat = stage_latency.get(stage)
        prec = stage_precision.get(stage, "fp32")
        peak = peaks.get("int8" if prec.startswith("int8") else "fp32")
        ms = lat["p50"] if lat else None
        achieved = fl["flops"] / (ms / 1e3) / 1e9 if ms else None
        rows.append({
            "stage": stage,
            "precision": prec,
            "gflop_per_call": fl["flops"] / 1e9,
            "latency_ms_p50": ms,
            "achieved_gflops": achieved,
            "peak_gflops": peak["gflops"] if peak else None,
            "fraction_of_peak": achieved / peak["gflops"] if (achieved and peak) else None,
            "unresolved_nodes": len(fl.get("unresolved", [])),
        })
    return rows


def plot(entries: Sequence[dict], peaks: dict, path, title: str = "") -> Optional[Path]:
    """Grouped bars (stage x configuration) of achieved GFLOP/s, log scale, with the measured peaks as lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    configs = [e for e in entries if any(r["achieved_gflops"] for r in e["stages"])]
    if not configs:
        return None
    stages: List[str] = []
    for e in configs:
        for r in e["stages"]:
            if r["achieved_gflops"] and r["stage"] not in stages:
                stages.append(r["stage"])
    width = 0.8 / len(configs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(stages) + 2), 4.5))
    for k, e in enumerate(configs):
        by = {r["stage"]: r for r in e["stages"]}
        xs, ys = [], []
        for i, s in enumerate(stages):
            v = by.get(s, {}).get("achieved_gflops")
            if v:
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(v)
        ax.bar(xs, ys, width, label=e["label"])
    styles = {"fp32": ("k", "--"), "int8": ("tab:red", ":")}
    for key, peak in peaks.items():
        if peak:
            color, ls = styles.get(key, ("gray", "-."))
            ax.axhline(peak["gflops"], color=color, linestyle=ls, linewidth=1.2,
                       label=f"{key} peak {peak['gflops']:.0f} GFLOP/s ({peak['how']})")
    ax.set_yscale("log")
    ax.set_xticks(range(len(stages)))
    ax.set_xticklabels(stages, rotation=20, ha="right")
    ax.set_ylabel("achieved GFLOP/s (log)")
    ax.set_title(title or "per-stage throughput vs measured GEMM peak")
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
