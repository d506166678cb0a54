"""What ``edgevos bench`` prints and draws: row tables, per-stage latency, the FPS-vs-J&F plot and
the physical-limit figure (FLOPs per stage from the ONNX graph against a measured GEMM peak)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

NA = "n/a"


def onnx_precision(backend: str, precision: str) -> str:
    """The ONNX precision in a bundle that a (backend, precision) row runs or builds its engines from."""
    if backend == "torch":
        return "fp32"
    if backend == "tensorrt":
        from edgevos.export.tensorrt import SOURCE

        return SOURCE[precision][0] if precision in SOURCE else "fp32"
    return precision


def fmt_value(v, fmt="{:.1f}", scale=1.0) -> str:
    """``v`` formatted, or "n/a" for a missing value."""
    return NA if v is None else fmt.format(v * scale)


def row_label(r) -> str:
    fam = r["family"] + (f":{r['preset']}" if r.get("preset") else "")
    return f"{fam} {r['backend']} {r['precision']}"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _lat(d):
    return NA if not d else f"{d['p50']:.1f}/{d['p95']:.1f}/{d['p99']:.1f}"


def table_rows(rows, status_width: int = 70):
    head = ["family", "backend", "precision", "tau", "status", "size MB", "J&F", "reuse", "FPS",
            "e2e ms p50/p95/p99", "W", "J/frame"]
    body = []
    for r in rows:
        fam = r["family"] + (f":{r['preset']}" if r.get("preset") else "")
        body.append([fam, r["backend"], r["precision"], f"{r['tau']:g}", _clip(r["status"], status_width),
                     fmt_value(r.get("size_mb")), fmt_value(r.get("J&F"), scale=100), fmt_value(r.get("reuse_rate"), "{:.2f}"),
                     fmt_value(r.get("fps"), "{:.2f}"), _lat((r.get("latency_ms") or {}).get("e2e")),
                     fmt_value(r.get("avg_watts"), "{:.2f}"), fmt_value(r.get("energy_per_frame_j"), "{:.3f}")])
    return head, body


def stage_table_rows(rows):
    head = ["row", "tau", "stage", "ran", "calls", "p50 ms", "p95 ms", "p99 ms"]
    body = []
    for r in rows:
        for k, v in (r.get("stage_ms") or {}).items():
            if v:
                calls = (r.get("stage_calls_per_frame") or {}).get(k)
                body.append([row_label(r), f"{r['tau']:g}", k, f"{100 * r['stage_runs'].get(k, 0):.0f}%",
                             "host" if calls is None else f"{calls:.1f}",
                             f"{v['p50']:.2f}", f"{v['p95']:.2f}", f"{v['p99']:.2f}"])
    return head, body


def format_text(head, body) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(head, *body)] if body else [len(h) for h in head]
    lines = ["  ".join(str(h).ljust(n) for h, n in zip(head, w)), "  ".join("-" * n for n in w)]
    lines += ["  ".join(str(c).ljust(n) for c, n in zip(row, w)) for row in body]
    return "\n".join(lines)


def format_md(head, body) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in body]
    return "\n".join(lines)


def device_line(device: dict) -> str:
    c, g, j = device.get("cpu", {}), device.get("gpu", {}), device.get("jetson", {})
    parts = [f"CPU {c.get('model', NA)} ({c.get('usable_cores', NA)} usable cores)"]
    gpus = [x["name"] for x in g.get("gpus", [])]
    parts.append(f"GPU {', '.join(gpus) if gpus else ('device nodes present' if g.get('present') else 'none')}")
    if j.get("is_jetson"):
        parts.append(f"Jetson {j.get('model')} (L4T {j.get('l4t')}, JetPack {j.get('jetpack')}), "
                     f"nvpmodel {j.get('nvpmodel')}, jetson_clocks {j.get('jetson_clocks')}")
    else:
        parts.append("not a Jetson")
    return "; ".join(parts)


def jetson_warning(device: dict) -> Optional[str]:
    """The warning for a Jetson whose clocks follow the load (numbers lower and noisier than it can do)."""
    j = device.get("jetson", {})
    if j.get("is_jetson") and j.get("jetson_clocks") != "on":
        return ("WARNING: jetson_clocks is not on: clocks follow the load, so FPS is lower and noisier than the "
                "board can do. For benchmarking run 'sudo nvpmodel -m 0 && sudo jetson_clocks' "
                f"(nvpmodel now: {j.get('nvpmodel', NA)}).")
    return None


def plot_fps_jf(rows, path, title: str = "") -> Optional[Path]:
    """One point per row (FPS vs J&F), a curve over tau per (family, backend, precision)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    pts = [r for r in rows if r["status"] == "ok" and r.get("fps") and r.get("J&F") is not None]
    if not pts:
        return None
    groups: Dict[str, list] = {}
    for r in pts:
        groups.setdefault(row_label(r), []).append(r)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    markers = "osD^vP*X"
    for k, (label, rs) in enumerate(groups.items()):
        rs = sorted(rs, key=lambda r: -r["tau"])
        ax.plot([r["fps"] for r in rs], [100 * r["J&F"] for r in rs], marker=markers[k % len(markers)],
                linestyle="-", label=label)
        for i, r in enumerate(rs):  # alternate label sides so neighbouring taus stay readable
            ax.annotate(f"τ={r['tau']:g}", (r["fps"], 100 * r["J&F"]), textcoords="offset points",
                        xytext=(5, 5 if i % 2 == 0 else -11), fontsize=7)
    ax.set_xlabel("steady-state FPS")
    ax.set_ylabel("J&F (%)")
    ax.set_title(title or "FPS vs J&F", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- roofline
def roofline(rows, bundles: Dict[tuple, Path], peaks: dict) -> Optional[dict]:
    """Per stage and (family, backend, precision): FLOPs/frame from the ONNX graph and achieved
    GFLOP/s at the median stage latency (from the largest tau at which the stage ran), vs ``peaks``."""
    from edgevos.bundle import load_bundle
    from edgevos.roofline import count_flops, stage_rows

    groups: Dict[str, List[dict]] = {}
    for r in rows:
        if r["status"] == "ok" and (r["family"], r["preset"]) in bundles:
            groups.setdefault(row_label(r), []).append(r)
    if not groups:
        return None
    cache: Dict[Path, dict] = {}
    entries = []
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: -r["tau"])
        r0 = rs[0]
        bundle = load_bundle(bundles[(r0["family"], r0["preset"])])
        onnx_prec = onnx_precision(r0["backend"], r0["precision"])
        flops, real, latency, taus = {}, {}, {}, {}
        for s in bundle.stage_names:
            p = bundle.stage_path(s, onnx_prec)
            if p not in cache:
                cache[p] = count_flops(p)
            flops[s] = cache[p]
            real[s] = "fp32" if r0["backend"] == "torch" else bundle.stage_precision(s, onnx_prec)
            if r0["backend"] == "tensorrt" and r0["precision"] == "fp16":
                real[s] = "fp16"
            ran = [r for r in rs if (r.get("stage_call_ms") or {}).get(s)]
            latency[s] = ran[0]["stage_call_ms"][s] if ran else None
            taus[s] = ran[0]["tau"] if ran else None
        # the peaks are CPU GEMMs: a GPU row has no peak of its own measured here
        stages = stage_rows(flops, latency, real, {} if r0["backend"] == "tensorrt" else peaks)
        for st in stages:
            st["tau"] = taus[st["stage"]]
        entries.append({"label": label, "stages": stages})
    return {"peaks": peaks, "entries": entries,
            "note": "FLOPs = 2 x MACs of Conv/ConvTranspose/Gemm/MatMul (and their integer forms) per call; "
                    "achieved = FLOPs / median latency of one call, host overhead of the call included; "
                    "peak = best of the CPU GEMMs timed before and after the matrix (n/a for TensorRT rows: "
                    "no GPU peak is measured)"}


def best_peaks(*measured) -> dict:
    out = {}
    for m in measured:
        for k, v in (m or {}).items():
            if v and (out.get(k) is None or v["gflops"] > out[k]["gflops"]):
                out[k] = v
            out.setdefault(k, None)
    return out


def roofline_table(roof) -> tuple:
    head = ["row", "stage", "precision", "GFLOP/call", "p50 ms (at tau)", "achieved GFLOP/s", "peak GFLOP/s",
            "% of peak"]
    body = []
    for e in roof["entries"]:
        for s in e["stages"]:
            ms = NA if s["latency_ms_p50"] is None else f"{s['latency_ms_p50']:.2f} ({s['tau']:g})"
            body.append([e["label"], s["stage"], s["precision"], f"{s['gflop_per_call']:.3f}", ms,
                         fmt_value(s["achieved_gflops"]), fmt_value(s["peak_gflops"], "{:.0f}"),
                         fmt_value(s["fraction_of_peak"], "{:.1f}", 100)])
    return head, body


# ----------------------------------------------------------------------------- the report
def write_report(out: Path, results: dict) -> List[str]:
    """Write ``results.json``, ``results.md`` and the figures of a finished matrix (what
    :func:`edgevos.bench.benchmark` returns); returns the text report, line by line."""
    out = Path(out)
    rows, roof, device = results["rows"], results["roofline"], results["device"]
    src_desc, frames_per_seq = results["source_description"], results["frames_per_sequence"]
    size, warning = results["input_size"], results["warning"]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    md = [f"# edgevos bench, {results['date']}", "",
          f"* device: {device_line(device)}",
          f"* source: {src_desc}; frames per sequence {frames_per_seq}, first {results['warmup_per_sequence']} of "
          f"each excluded from FPS/latency; input {size[0]}x{size[1]}; threads {results['threads'] or 'default'}",
          f"* weights: {', '.join(f'{f}={w}' for f, w in results['weights'].items())}",
          "* size MB: the stage files a row loads (checkpoint for torch); latency: end to end per frame, "
          "steady state; W and J/frame from tegrastats/jtop (n/a where power cannot be read)", ""]
    if warning:
        md += [f"> {warning}", ""]
    text = [f"edgevos bench: {src_desc}; {device_line(device)}; {results['date']}"]

    def table(md_head: List[str], text_title: Optional[str], head, body, md_body=None, image=None, alt=""):
        md.extend([*md_head, format_md(head, body if md_body is None else md_body), ""])
        if image:
            md.extend([f"![{alt}]({Path(image).name})", ""])
        text.extend(([text_title] if text_title else []) + [format_text(head, body), ""])

    head, body = table_rows(rows)
    table([], None, head, body, md_body=table_rows(rows, status_width=200)[1])
    png = plot_fps_jf(rows, out / "fps_vs_jf.png",
                      title=f"FPS vs J&F on {src_desc.split(' (')[0]} ({sum(frames_per_seq)} frames)")
    table(["## Per-stage latency (ms per frame, steady state; 'ran' = share of frames running the stage, "
           "'calls' = calls per such frame, one per object for per-object stages)", ""],
          None, *stage_table_rows(rows), image=png, alt="FPS vs J&F")
    if roof:
        from edgevos.roofline import plot as plot_roof

        (out / "roofline.json").write_text(json.dumps(roof, indent=2))
        rpng = plot_roof(roof["entries"], roof["peaks"], out / "roofline.png",
                         title=f"per-stage GFLOP/s vs measured GEMM peak ({(device.get('cpu') or {}).get('model', '')})")
        peaks = ", ".join(f"{k} {v['gflops']:.0f} GFLOP/s ({v['how']}, {v['threads']} threads)"
                          for k, v in roof["peaks"].items() if v)
        table(["## Physical limit", "", f"Measured peak in this run: {peaks}. {roof['note']}.", ""],
              f"physical limit (peak: {peaks})", *roofline_table(roof), image=rpng, alt="roofline")
    (out / "results.md").write_text("\n".join(md))
    text.append(f"wrote {out / 'results.json'}, {out / 'results.md'}"
                + (f", {png}" if png else " (no FPS-vs-J&F plot: no row with J&F)")
                + (f", {out / 'roofline.png'}" if roof else ""))
    return text
