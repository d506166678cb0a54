"""Evaluate a model on sequences with ground truth: J&F, reuse rate and FPS per tau.

``evaluate(...)`` is the public entry (``edgevos eval --family ...`` is its
argument layer).  The session is created once per tau; the first frame
(initialisation) is excluded from FPS.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from edgevos.errors import InputError
from edgevos.parsing import parse_hw, parse_taus


def run_sequence(session, seq, save_dir: Optional[Path] = None) -> dict:
    """Run one sequence; return predicted masks, per-frame stats and the J/F evaluation."""
    from edgevos.data import write_mask
    from edgevos.metrics import evaluate_sequence

    frames = [seq.frame(i) for i in range(len(seq))]  # decode first: time the model only
    gts = [seq.mask(i) for i in range(len(seq))]
    supervised = getattr(session, "supervised", True)
    first = np.where(gts[0] == 255, 0, gts[0]) if gts[0] is not None else None
    preds, reused, ms, stage_ms = [], [], [], {}
    res = session.start(frames[0], first) if supervised else session.start(frames[0])
    preds.append(res.mask)
    for f in frames[1:]:
        t0 = time.perf_counter()
        res = session.step(f)
        ms.append((time.perf_counter() - t0) * 1e3)
        preds.append(res.mask)
        reused.append(res.reused)
        for k, v in res.stage_ms.items():
            stage_ms[k] = stage_ms.get(k, 0.0) + v
    if save_dir is not None:
        names = getattr(seq, "frame_names", None) or [f"{i:05d}" for i in range(len(seq))]
        for name, m in zip(names, preds):
            write_mask(Path(save_dir) / seq.name / f"{name}.png", m)
    ev = None
    if all(g is not None for g in gts):
        ev = evaluate_sequence(gts, preds, protocol="semi" if supervised else "unsupervised")
    n = max(len(ms), 1)
    return {
        "name": seq.name,
        "frames": len(seq),
        "reuse_rate": float(np.mean(reused)) if reused else 0.0,
        "ms_per_frame": float(np.mean(ms)) if ms else float("nan"),
        "stage_ms_per_frame": {k: v / n for k, v in stage_ms.items()},
        "eval": ev,
        "masks": preds,
    }


def evaluate_taus(make_session: Callable[[float], object], sequences: Sequence, taus: Sequence[float],
                  save_masks: Optional[Path] = None, progress: bool = True) -> List[dict]:
    """One row per tau: J&F, J, F (means over objects), reuse rate, FPS, per sequence detail."""
    from tqdm import tqdm

    rows = []
    for tau in taus:
        session = make_session(tau)
        per_seq, j_all, f_all, ms_all, reuse_all = [], [], [], [], []
        it = tqdm(sequences, desc=f"tau={tau:g}", unit="seq", disable=not progress)
        for seq in it:
            out_dir = None
            if save_masks is not None:
                out_dir = Path(save_masks) if len(taus) == 1 else Path(save_masks) / f"tau{tau:g}"
            r = run_sequence(session, seq, out_dir)
            stats = r["eval"]["stats"] if r["eval"] else {}
            j = [s["J-Mean"] for s in stats.values()]
            f = [s["F-Mean"] for s in stats.values()]
            j_all += j
            f_all += f
            ms_all += [r["ms_per_frame"]] * (r["frames"] - 1)
            reuse_all += [r["reuse_rate"]] * (r["frames"] - 1)
            per_seq.append({"sequence": r["name"], "J": float(np.mean(j)) if j else None,
                            "F": float(np.mean(f)) if f else None, "reuse_rate": r["reuse_rate"],
                            "fps": 1000.0 / r["ms_per_frame"], "stage_ms": r["stage_ms_per_frame"]})
        jm = float(np.mean(j_all)) if j_all else None
        fm = float(np.mean(f_all)) if f_all else None
        rows.append({
            "tau": tau,
            "J&F": (jm + fm) / 2 if jm is not None else None,
            "J": jm, "F": fm,
            "reuse_rate": float(np.mean(reuse_all)) if reuse_all else 0.0,
            "fps": 1000.0 / float(np.mean(ms_all)) if ms_all else None,
            "sequences": per_seq,
        })
    return rows


def session_factory(family: Optional[str] = None, weights: str = "default", bundle=None,
                    backend: Optional[str] = None, precision: Optional[str] = None, threads: Optional[int] = None,
                    max_reuse: Optional[int] = None, input_size=None,
                    program_options: Optional[dict] = None) -> Callable[[float], object]:
    """``tau -> Session`` for a bundle (any backend) or a family's PyTorch weights.

    Args:
        family: model family of ``weights`` (not needed with ``bundle``).
        weights: ``"default"`` or a checkpoint path (PyTorch).
        bundle: an exported bundle directory instead of weights.
        backend: for ``bundle``; default onnxruntime.  Weights run on torch.
        precision, threads, max_reuse: for the session.
        input_size: model input (H, W) or ``"HxW"`` for weights (default: the checkpoint's).
        program_options: further step-program options (e.g. G-FRTM-fast's ``reuse_max_area``).

    Returns:
        A function making a fresh session for a threshold.
    """
    from edgevos.runtime.session import Session

    opts = dict(program_options or {})
    if bundle:
        backend = backend or "onnxruntime"
        return lambda tau: Session.from_bundle(bundle, backend=backend, precision=precision, tau=tau,
                                               threads=threads, max_reuse=max_reuse, **opts)
    if backend not in (None, "torch"):
        raise InputError(f"--backend {backend} needs an exported --bundle; --weights runs on torch")
    if precision not in (None, "fp32"):
        raise InputError(f"--precision {precision} needs an exported --bundle; --weights runs in FP32 on torch")
    if not family:
        raise InputError("evaluating weights needs their model family (--family gfrtm, or family='gfrtm')")
    from edgevos.models.registry import get_family

    kwargs = {}
    if input_size:
        kwargs["input_size"] = parse_hw(input_size, "--input-size") if isinstance(input_size, str) else tuple(input_size)
    else:
        from edgevos.models.weights import load_checkpoint

        saved = load_checkpoint(family, weights).get("config", {})
        if "input_size" in saved:
            kwargs["input_size"] = tuple(saved["input_size"])
    model = get_family(family).build(weights=weights, **kwargs)
    return lambda tau: Session.from_model(model, tau=tau, threads=threads, max_reuse=max_reuse, **opts)


def evaluate(sequences, tau: Union[float, Sequence[float]] = 1.0, *, family: Optional[str] = None,
             weights: str = "default", bundle=None, backend: Optional[str] = None, precision: Optional[str] = None,
             max_reuse: Optional[int] = None, input_size=None, threads: Optional[int] = None,
             save_masks=None, progress: bool = True, program_options: Optional[dict] = None) -> List[dict]:
    """Run a model over sequences with ground truth and score it, once per tau.

        rows = evaluate("DAVIS", tau=[1, 0.7], bundle="bundles/gfrtm")

    Args:
        sequences: a DAVIS-layout folder (every sequence in it), or sequence objects
            (``name``, ``len()``, ``frame(i)``, ``mask(i)``: :mod:`edgevos.data`).
        tau: one reuse-gate threshold or several.
        family, weights, bundle, backend, precision, max_reuse, input_size, threads, program_options:
            the model to run; see :func:`session_factory`.
        save_masks: write predicted masks in DAVIS layout here (``tau<t>/`` per tau when several).
        progress: show a progress bar.

    Returns:
        One row per tau: ``tau``, ``J&F``, ``J``, ``F`` (means over objects), ``reuse_rate``,
        ``fps`` and per-sequence detail under ``sequences``.
    """
    if isinstance(sequences, (str, Path)):
        from edgevos.data import DavisDataset

        ds = DavisDataset(sequences)
        sequences = [ds[n] for n in ds.sequences]
    taus = parse_taus(",".join(str(t) for t in tau) if isinstance(tau, (list, tuple)) else tau)
    make = session_factory(family, weights, bundle, backend, precision, threads, max_reuse, input_size,
                           program_options)
    return evaluate_taus(make, sequences, taus, save_masks=save_masks, progress=progress)


def format_rows(rows: List[dict]) -> str:
    head = f"{'tau':>5} {'J&F':>7} {'J':>7} {'F':>7} {'reuse':>6} {'FPS':>7}"
    lines = [head, "-" * len(head)]
    fmt = lambda v, s=100: "   n/a" if v is None else f"{v * s:7.2f}"
    for r in rows:
        lines.append(f"{r['tau']:>5g} {fmt(r['J&F'])} {fmt(r['J'])} {fmt(r['F'])} {r['reuse_rate']:6.3f} "
                     f"{r['fps'] if r['fps'] else float('nan'):7.2f}")
    return "\n".join(lines)


def plot_rows(rows: List[dict], path: Path, title: str = "") -> Optional[Path]:
    """FPS vs J&F, one point per tau (the paper's Figure 6)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    pts = [(r["fps"], r["J&F"] * 100, r["tau"]) for r in rows if r["J&F"] is not None and r["fps"]]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
    for x, y, t in pts:
        ax.annotate(f"tau={t:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("FPS")
    ax.set_ylabel("J&F (%)")
    ax.set_title(title or "reuse gate: FPS vs J&F")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
