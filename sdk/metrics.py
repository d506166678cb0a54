"""DAVIS region (J) and boundary (F) measures.

Definitions follow the DAVIS 2017 evaluation (semi-supervised task):

* J: intersection over union of the object's pixels; an empty union scores 1.
* F: each mask's 1-pixel boundary map (a pixel is on the boundary when it
  differs from its right, lower or lower-right neighbour; the image's last
  row and column compare only along the edge) is dilated by a disk of radius
  ``ceil(bound_th * sqrt(H^2 + W^2))`` pixels (``bound_th`` >= 1 is a radius
  in pixels); precision is the share of predicted boundary pixels within the
  dilated ground-truth boundary, recall the converse, F = 2PR / (P + R);
  both boundaries empty scores 1, exactly one empty scores 0.
* Per object over frames 1..T-2 (first and last excluded): Mean, Recall =
  share of frames above 0.5, Decay = mean of the first quarter minus mean of
  the last quarter (quarters from ``round(linspace(1, n, 5))``, overlapping by
  one frame at the cuts).
* Global: means over all objects of all sequences; J&F-Mean = (J-Mean + F-Mean) / 2.

Ground truth: 255 ("void") is treated as background, and the objects scored
are ids 1..max id of the first ground-truth frame, as the official tool does.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edgevos.errors import DataError, InputError

GLOBAL_MEASURES = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
PER_OBJECT_MEASURES = ["Sequence", "J-Mean", "F-Mean"]
VOID = 255


# ----------------------------------------------------------------------------- per-frame measures

def _check_same_shape(a, b, what):
    if a.shape != b.shape:
        raise InputError(f"{what} shapes differ: annotation {a.shape} vs segmentation {b.shape}; pass masks of the same size")


def mean_object_iou(pred: np.ndarray, gt: np.ndarray) -> Optional[float]:
    """Accuracy against ground truth: the mean over the object ids of ``gt`` of the
    IoU of that id in ``pred`` and ``gt``, void (255) pixels ignored.

    Args:
        pred: (H, W) predicted object ids.
        gt: (H, W) ground-truth object ids, 0 background, 255 void.

    Returns:
        The mean IoU, or None when ``gt`` has no object.
    """
    valid = gt != VOID
    ious = []
    for obj in np.unique(gt[valid]):
        if obj == 0:
            continue
        p = (pred == obj) & valid
        g = gt == obj
        union = np.count_nonzero(p | g)
        ious.append(np.count_nonzero(p & g) / union if union else 1.0)
    return float(np.mean(ious)) if ious else None


def agreement_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two id maps, neither taken as the truth: the mean over the ids
    present in either (0 and 255 excluded) of their IoU.

    Args:
        a, b: (H, W) object ids of the same shape.

    Returns:
        The mean IoU; 1.0 when both maps are empty.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    ids = sorted((set(np.unique(a).tolist()) | set(np.unique(b).tolist())) - {0, VOID})
    if not ids:
        return 1.0
    vals = []
    for k in ids:
        x, y = a == k, b == k
        union = np.logical_or(x, y).sum()
        vals.append(1.0 if union == 0 else float(np.logical_and(x, y).sum() / union))
    return float(np.mean(vals))


def db_eval_iou(annotation, segmentation, void_pixels=None):
    """Jaccard index of two binary masks (or stacks of masks, last two axes
    are H, W); pixels set in ``void_pixels`` are ignored.  An empty union
    scores 1."""
    annotation = np.asarray(annotation).astype(bool)
    segmentation = np.asarray(segmentation).astype(bool)
    _check_same_shape(annotation, segmentation, "db_eval_iou")
    if void_pixels is None:
        keep = np.ones(annotation.shape[-2:], bool)
    else:
        void = np.asarray(void_pixels).astype(bool)
        _check_same_shape(annotation, void, "db_eval_iou void")
        keep = ~void
    inter = np.sum(annotation & segmentation & keep, axis=(-2, -1))
    union = np.sum((annotation | segmentation) & keep, axis=(-2, -1))
    empty = union == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / np.where(empty, 1, union)
    if np.ndim(j) == 0:
        return 1.0 if bool(empty) else float(j)
    j = j.astype(np.float64)
    j[empty] = 1.0
    return j


def boundary_map(mask) -> np.ndarray:
    """1-pixel boundary of a binary mask, offset half a pixel towards the origin.

    A pixel is a boundary pixel when it differs from its right, lower or
    lower-right neighbour, the image extended by repeating its last row and
    column (so the last row compares only rightwards, the last column only
    downwards, and the bottom-right pixel never is one).
    """
    seg = np.asarray(mask).astype(bool)
    if seg.ndim != 2:
        raise InputError(f"boundary_map needs a 2-D mask, got shape {seg.shape}")
    ext = np.pad(seg, ((0, 1), (0, 1)), mode="edge")
    right = ext[:-1, 1:]
    down = ext[1:, :-1]
    diag = ext[1:, 1:]
    return (seg != right) | (seg != down) | (seg != diag)


def disk(radius: int) -> np.ndarray:
    """Disk footprint of the given radius: offsets (dx, dy) with dx^2 + dy^2 <= radius^2."""
    r = int(radius)
    d = np.arange(-r, r + 1)
    return ((d[:, None] ** 2 + d[None, :] ** 2) <= r * r).astype(np.uint8)


def boundary_radius(shape, bound_th: float = 0.008) -> int:
    """Dilation radius in pixels for an image of ``shape`` (H, W)."""
    if bound_th >= 1:
        return int(math.ceil(bound_th))
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def f_measure(foreground_mask, gt_mask, void_pixels=None, bound_th: float = 0.008) -> float:
    """Boundary F-measure of one predicted mask against one ground-truth mask."""
    import cv2

    fg = np.asarray(foreground_mask).astype(bool)
    gt = np.asarray(gt_mask).astype(bool)
    _check_same_shape(gt, fg, "f_measure")
    if void_pixels is not None:
        keep = ~np.asarray(void_pixels).astype(bool)
        _check_same_shape(gt, keep, "f_measure void")
        fg = fg & keep
        gt = gt & keep

    fg_b = boundary_map(fg)
    gt_b = boundary_map(gt)
    n_fg = int(np.count_nonzero(fg_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0  # precision or recall is 0 and the other 1

    footprint = disk(boundary_radius(fg.shape, bound_th))
    fg_dil = cv2.dilate(fg_b.view(np.uint8), footprint).astype(bool)
    gt_dil = cv2.dilate(gt_b.view(np.uint8), footprint).astype(bool)
    precision = np.count_nonzero(fg_b & gt_dil) / float(n_fg)
    recall = np.count_nonzero(gt_b & fg_dil) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def db_eval_boundary(annotation, segmentation, void_pixels=None, bound_th: float = 0.008):
    """Boundary F-measure; for (T, H, W) stacks returns one value per frame."""
    annotation = np.asarray(annotation)
    segmentation = np.asarray(segmentation)
    _check_same_shape(annotation, segmentation, "db_eval_boundary")
    if annotation.ndim == 2:
        return f_measure(segmentation, annotation, void_pixels, bound_th)
    if annotation.ndim == 3:
        out = np.zeros(annotation.shape[0])
        for t in range(annotation.shape[0]):
            vp = None if void_pixels is None else np.asarray(void_pixels)[t]
            out[t] = f_measure(segmentation[t], annotation[t], vp, bound_th)
        return out
    raise InputError(f"db_eval_boundary supports (H, W) or (T, H, W) masks, got {annotation.ndim} dimensions")


def db_statistics(per_frame_values) -> tuple:
    """(Mean, Recall, Decay) of per-frame values."""
    v = np.asarray(per_frame_values, dtype=np.float64)
    if v.size == 0:
        raise InputError("no frames to summarise: a sequence needs at least 3 frames (first and last are excluded)")
    mean = float(np.nanmean(v))
    recall = float(np.nanmean(v > 0.5))
    cuts = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.int64)
    first = v[cuts[0]:cuts[1] + 1]
    last = v[cuts[3]:cuts[4] + 1]
    with np.errstate(invalid="ignore"), _quiet():
        decay = float(np.nanmean(first) - np.nanmean(last))
    return mean, recall, decay


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


# ----------------------------------------------------------------------------- sequences

def _as_stack(masks, what) -> np.ndarray:
    try:
        arr = np.stack([np.asarray(m) for m in masks])
    except ValueError as exc:
        raise InputError(f"{what} masks do not all have the same shape: {exc}") from exc
    if arr.ndim != 3:
        raise InputError(f"{what} masks must be (H, W) id maps, got a stack of shape {arr.shape}")
    return arr


def evaluate_sequence(gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray],
                      object_ids: Optional[Sequence[int]] = None, bound_th: float = 0.008,
                      protocol: str = "semi") -> dict:
    """J and F of one sequence.

    ``gt_masks`` and ``pred_masks``: one (H, W) id map per frame, all frames
    of the sequence.  ``object_ids``: the objects to score; default 1..max id of
    the first ground-truth mask.  ``protocol``: ``"semi"`` (semi-supervised: the
    first and last frames are excluded) or ``"unsupervised"`` (DAVIS 2016
    unsupervised: every frame, the union of all objects against the predicted
    foreground, scored as object 1).

    Returns ``{"object_ids": [...], "frames": [1, ..., T-2],
    "J": {id: per-frame array}, "F": {id: per-frame array},
    "stats": {id: {"J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay", "J&F-Mean"}}}``.
    """
    if protocol not in ("semi", "unsupervised"):
        raise InputError(f"unknown evaluation protocol '{protocol}': use 'semi' or 'unsupervised'")
    gt = _as_stack(gt_masks, "ground-truth")
    pred = _as_stack(pred_masks, "predicted")
    unsupervised = protocol == "unsupervised"
    if unsupervised:
        gt = np.where(gt == VOID, VOID, (gt > 0).astype(gt.dtype))
        pred = (pred > 0).astype(np.uint8)
        object_ids = [1]
    if gt.shape[0] != pred.shape[0]:
        raise InputError(f"{gt.shape[0]} ground-truth masks but {pred.shape[0]} predicted masks; pass one per frame")
    if gt.shape[1:] != pred.shape[1:]:
        raise InputError(f"predicted masks are {pred.shape[2]}x{pred.shape[1]} but ground truth is "
                         f"{gt.shape[2]}x{gt.shape[1]}; pass masks of the frame size")
    if gt.shape[0] < (1 if unsupervised else 3):
        raise InputError(f"a sequence needs at least 3 frames to evaluate (first and last are excluded), got {gt.shape[0]}")

    keep = slice(None) if unsupervised else slice(1, -1)
    gt = np.where(gt == VOID, 0, gt)[keep]
    pred = pred[keep]
    if object_ids is None:
        first = np.where(np.asarray(gt_masks[0]) == VOID, 0, np.asarray(gt_masks[0]))
        object_ids = list(range(1, int(first.max()) + 1))
        extra = []
        if pred.size and int(pred.max()) > len(object_ids):
            extra = sorted(int(v) for v in np.unique(pred) if v > len(object_ids))
        if extra:
            raise InputError(
                f"predicted masks contain ids {extra} but the ground truth has {len(object_ids)} object(s); "
                "predictions must use the ids of the first-frame mask"
            )
    object_ids = [int(k) for k in object_ids]

    first_frame = 0 if unsupervised else 1
    out = {"object_ids": object_ids, "frames": list(range(first_frame, first_frame + gt.shape[0])), "J": {}, "F": {},
           "stats": {}}
    for k in object_ids:
        g = gt == k
        p = pred == k
        j = np.atleast_1d(db_eval_iou(g, p)).astype(np.float64)
        f = np.array([f_measure(p[t], g[t], None, bound_th) for t in range(g.shape[0])], dtype=np.float64)
        jm, jr, jd = db_statistics(j)
        fm, fr, fd = db_statistics(f)
        out["J"][k] = j
        out["F"][k] = f
        out["stats"][k] = {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd,
                           "F-Mean": fm, "F-Recall": fr, "F-Decay": fd, "J&F-Mean": (jm + fm) / 2}
    return out


def summarize(per_sequence: dict) -> dict:
    """Global and per-object tables from ``{sequence: evaluate_sequence(...)}``.

    Returns ``{"global": {measure: value}, "per_object": {"<seq>_<id>": {"J-Mean", "F-Mean", ...}}}``;
    global values are means over all objects of all sequences.
    """
    rows = {}
    for seq, res in per_sequence.items():
        for k in res["object_ids"]:
            rows[f"{seq}_{k}"] = dict(res["stats"][k])
    if not rows:
        raise InputError("nothing to summarise: no objects were evaluated")

    def mean(key):
        return float(np.mean([r[key] for r in rows.values()]))

    g = {m: mean(m) for m in GLOBAL_MEASURES if m != "J&F-Mean"}
    g = {"J&F-Mean": (g["J-Mean"] + g["F-Mean"]) / 2, **g}
    return {"global": g, "per_object": rows}


def write_csvs(out_dir, summary: dict) -> tuple:
    """Write ``global_results.csv`` and ``per-object_results.csv`` (3 decimals,
    the official tool's columns) into ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    g_path = out_dir / "global_results.csv"
    o_path = out_dir / "per-object_results.csv"
    with open(g_path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(GLOBAL_MEASURES)
        w.writerow([f"{summary['global'][m]:.3f}" for m in GLOBAL_MEASURES])
    with open(o_path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(PER_OBJECT_MEASURES)
        for name, r in summary["per_object"].items():
            w.writerow([name, f"{r['J-Mean']:.3f}", f"{r['F-Mean']:.3f}"])
    return g_path, o_path


def write_json(path, results: dict) -> Path:
    """Full-precision results (global, per object, per frame) as JSON."""
    def conv(o):
        if isinstance(o, dict):
            return {str(k): conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        if isinstance(o, np.ndarray):
            return [float(x) for x in o.tolist()]
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        return o

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(conv(results), indent=2) + "\n")
    return path


# ----------------------------------------------------------------------------- folders

def evaluate_results(results_dir, davis_root, sequences=None, resolution: str = "480p",
                     progress: bool = False) -> dict:
    """Evaluate ``results_dir/<seq>/<frame>.png`` against a DAVIS folder.

    ``sequences``: names (list or comma-separated) or an image-set name; by
    default every sequence folder in ``results_dir`` (each must exist in the
    DAVIS folder).  Result PNGs are read with :func:`edgevos.data.read_mask`
    and needed for frames 1..T-2 of each sequence.

    Returns ``{"global": ..., "per_object": ..., "sequences": {seq: evaluate_sequence(...)}}``.
    """
    from edgevos.data import DavisDataset, read_mask

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DataError(f"results folder not found: {results_dir}")
    if sequences is None:
        names = sorted(p.name for p in results_dir.iterdir() if p.is_dir() and any(p.glob("*.png")))
        if not names:
            raise DataError(f"no sequence folders with PNG masks in {results_dir}; expected {results_dir}/<sequence>/00000.png")
        dataset = DavisDataset(davis_root, names, resolution=resolution)
    else:
        dataset = DavisDataset(davis_root, sequences, resolution=resolution)

    per_seq = {}
    names = dataset.sequences
    iterator = names
    if progress:
        try:
            from tqdm import tqdm

            iterator = tqdm(names, desc="eval", unit="seq")
        except ImportError:  # pragma: no cover
            pass
    for name in iterator:
        seq = dataset[name]
        n = len(seq)
        if n < 3:
            raise DataError(f"sequence {name!r} has {n} frames; evaluation needs at least 3")
        gt = [seq.mask(i) for i in range(n)]
        pred = [np.zeros_like(gt[0])]
        for i in range(1, n - 1):
            path = results_dir / name / f"{seq.frame_names[i]}.png"
            if not path.is_file():
                raise DataError(f"missing result mask {path}: every frame except the first and last needs one")
            m = read_mask(path)
            if m.shape != gt[i].shape:
                raise DataError(f"result mask {path} is {m.shape[1]}x{m.shape[0]} but the ground truth is "
                                f"{gt[i].shape[1]}x{gt[i].shape[0]}; save masks at the frame size")
            pred.append(m)
        pred.append(np.zeros_like(gt[0]))
        try:
            per_seq[name] = evaluate_sequence(gt, pred)
        except InputError as exc:
            raise DataError(f"sequence {name!r} in {results_dir}: {exc}") from exc
    summary = summarize(per_seq)
    summary["sequences"] = per_seq
    return summary
