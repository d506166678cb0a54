"""J/F against hand-computed cases and values from the official DAVIS evaluation."""
import math

import numpy as np
import pytest

from edgevos.errors import InputError
from edgevos.metrics import (boundary_map, boundary_radius, db_eval_boundary, db_eval_iou, db_statistics, disk,
                             evaluate_sequence, f_measure, summarize, write_csvs)


def square(h=20, w=20, y=5, x=5, s=10):
    m = np.zeros((h, w), bool)
    m[y:y + s, x:x + s] = True
    return m


# ----------------------------------------------------------------------------- J

def test_iou_empty_both_is_one():
    z = np.zeros((8, 8), bool)
    assert db_eval_iou(z, z) == 1.0


def test_iou_full_and_empty():
    full, empty = np.ones((8, 8), bool), np.zeros((8, 8), bool)
    assert db_eval_iou(full, full) == 1.0
    assert db_eval_iou(full, empty) == 0.0
    assert db_eval_iou(empty, full) == 0.0


def test_iou_one_pixel_shift():
    a = square()
    b = np.roll(a, 1, axis=1)  # 10x10 square moved right by one pixel
    assert db_eval_iou(a, b) == pytest.approx(90 / 110)


def test_iou_void_pixels_are_ignored():
    a = square()
    b = np.roll(a, 1, axis=1)
    void = np.zeros_like(a)
    void[:, 15] = True  # the column only b covers
    void[:, 5] = True   # the column only a covers
    assert db_eval_iou(a, b, void) == 1.0


def test_iou_stack_gives_per_frame_values_and_empty_frames_score_one():
    a = np.stack([square(), np.zeros((20, 20), bool)])
    b = np.stack([np.roll(square(), 1, axis=0), np.zeros((20, 20), bool)])
    np.testing.assert_allclose(db_eval_iou(a, b), [90 / 110, 1.0])


# ----------------------------------------------------------------------------- boundaries

def test_boundary_map_single_pixel_in_corner():
    m = np.zeros((6, 6), bool)
    m[5, 5] = True  # bottom-right corner pixel
    expected = np.zeros((6, 6), bool)
    expected[4, 4] = expected[4, 5] = expected[5, 4] = True
    np.testing.assert_array_equal(boundary_map(m), expected)


def test_boundary_map_edges_of_the_image_are_not_boundaries():
    assert not boundary_map(np.ones((7, 9), bool)).any()
    m = np.zeros((10, 10), bool)
    m[:, 5:] = True  # right half, touching the right edge
    b = boundary_map(m)
    assert b[:, 4].all() and b.sum() == 10  # the boundary sits on the background column next to it


def test_boundary_map_top_row_object():
    m = np.zeros((10, 10), bool)
    m[0, :] = True
    b = boundary_map(m)
    assert b[0].all() and b.sum() == 10


def test_disk_footprint_and_radius():
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    d2 = disk(2)
    assert d2.shape == (5, 5) and d2.sum() == 13 and d2[0, 2] == 1 and d2[0, 1] == 0
    assert boundary_radius((480, 854)) == 8  # ceil(0.008 * 979.7)
    assert boundary_radius((20, 20)) == 1
    assert boundary_radius((20, 20), 3) == 3


# ----------------------------------------------------------------------------- F

def test_f_empty_full_and_one_sided():
    z, o = np.zeros((20, 20), bool), np.ones((20, 20), bool)
    assert f_measure(z, z) == 1.0
    assert f_measure(o, o) == 1.0  # full masks have no boundary
    assert f_measure(square(), z) == 0.0  # prediction but nothing to find
    assert f_measure(z, square()) == 0.0


def test_f_one_pixel_shift_within_tolerance():
    a = square()
    assert f_measure(np.roll(a, 1, axis=1), a) == 1.0


def test_f_two_pixel_offset_against_radius():
    gt = np.zeros((20, 20), bool)
    gt[:, :10] = True      # boundary: column 9
    pred = np.zeros((20, 20), bool)
    pred[:, :12] = True    # boundary: column 11, two pixels away
    assert f_measure(pred, gt) == 0.0               # default radius at 20x20 is 1
    assert f_measure(pred, gt, bound_th=1) == 0.0
    assert f_measure(pred, gt, bound_th=2) == 1.0


def test_f_partial_match_hand_computed():
    gt = np.zeros((20, 20), bool)
    gt[:, :10] = True                    # boundary column 9, rows 0..19
    pred = gt.copy()
    pred[10:, 10:13] = True              # lower half sticks out by 3 pixels
    # pred boundary: column 9 rows 0..8 (9 px), the step at row 9 (columns 9..12, 4 px),
    # column 12 rows 10..19 (10 px) = 23 px; with radius 1 the first 9 + (9,9),(9,10) match gt -> 11
    # gt boundary: 20 px; rows 0..10 are within one pixel of pred's ((10, 9) touches (9, 9)) -> 11
    pb = boundary_map(pred)
    assert pb.sum() == 23
    p, r = 11 / 23, 11 / 20
    assert f_measure(pred, gt) == pytest.approx(2 * p * r / (p + r))


def test_f_boundary_at_image_edge():
    gt = np.zeros((20, 20), bool)
    gt[-2:, :] = True   # bottom two rows: boundary row 17
    pred = np.zeros((20, 20), bool)
    pred[-1:, :] = True  # bottom row: boundary row 18
    assert f_measure(pred, gt) == 1.0
    pred3 = np.zeros((20, 20), bool)
    pred3[-4:, :] = True  # boundary row 15: two rows away
    assert f_measure(pred3, gt) == 0.0


def test_db_eval_boundary_stack():
    a = np.stack([square(), square()])
    b = np.stack([square(), np.zeros((20, 20), bool)])
    np.testing.assert_allclose(db_eval_boundary(a, b), [1.0, 0.0])


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="shapes differ"):
        db_eval_iou(np.zeros((4, 4)), np.zeros((4, 5)))


# ----------------------------------------------------------------------------- statistics and sequences

def test_statistics_mean_recall_decay():
    v = [1, 1, 1, 0.5, 0.5, 0, 0, 0]
    m, r, d = db_statistics(v)
    assert m == pytest.approx(0.5)
    assert r == pytest.approx(3 / 8)
    # quarters of 8 values: [0:3] and [5:8] (inclusive cuts at round(linspace(1, 8, 5)) - 1)
    assert d == pytest.approx(1.0)


def test_evaluate_sequence_excludes_first_and_last_frame():
    gt = [np.where(square(y=2 + t), 1, 0).astype(np.uint8) for t in range(6)]
    pred = [g.copy() for g in gt]
    pred[0][:] = 0
    pred[-1][:] = 1
    res = evaluate_sequence(gt, pred)
    assert res["object_ids"] == [1]
    assert res["frames"] == [1, 2, 3, 4]
    np.testing.assert_array_equal(res["J"][1], np.ones(4))
    assert res["stats"][1]["J&F-Mean"] == 1.0


def test_evaluate_sequence_void_is_background_and_missing_object_scores_zero():
    gt = []
    for t in range(5):
        g = np.zeros((20, 20), np.uint8)
        g[2:8, 2:8] = 1
        g[12:18, 12:18] = 2
        g[0, :] = 255
        gt.append(g)
    pred = [np.where(g == 255, 0, g) for g in gt]
    pred = [np.where(p == 2, 0, p) for p in pred]  # object 2 never found
    res = evaluate_sequence(gt, pred)
    assert res["object_ids"] == [1, 2]
    assert res["stats"][1]["J-Mean"] == 1.0 and res["stats"][1]["F-Mean"] == 1.0
    assert res["stats"][2]["J-Mean"] == 0.0 and res["stats"][2]["F-Mean"] == 0.0
    with pytest.raises(InputError, match="ids \\[3\\]"):
        evaluate_sequence(gt, [np.full((20, 20), 3, np.uint8)] * 5)
    with pytest.raises(InputError, match="at least 3 frames"):
        evaluate_sequence(gt[:2], pred[:2])


def _golden_case():
    """9 frames 90x160, two objects (an ellipse and a triangle in front of it), a void
    strip, and a prediction shifted / eroded / missing object 2 in one frame."""
    import cv2

    gts, preds = [], []
    for t in range(9):
        g = np.zeros((90, 160), np.uint8)
        cv2.ellipse(g, (40 + 6 * t, 45), (25, 15), 10 * t, 0, 360, 1, -1)
        tri = np.array([[120 - 5 * t, 10], [150 - 5 * t, 80], [90 - 5 * t, 70]], np.int32)
        cv2.fillPoly(g, [tri], 2)
        g[:, 0:2] = 255
        p = np.zeros_like(g)
        o1 = np.roll((g == 1).astype(np.uint8), (t % 3, (t % 4) - 1), (0, 1))
        o2 = cv2.erode((g == 2).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=t % 3)
        p[o1 > 0] = 1
        p[o2 > 0] = 2
        if t == 5:
            p[p == 2] = 0
        gts.append(g)
        preds.append(p)
    return gts, preds


# Produced by davis2017-evaluation (davis2017/metrics.py db_eval_iou, db_eval_boundary and
# utils.db_statistics, commit ac7c43f, scikit-image 0.26 disk) on _golden_case() with the
# ground truth's void set to background, frames 1..7.
OFFICIAL = {
    1: {"J": [0.9210526316, 0.8595166163, 0.896073903, 0.890052356, 0.8540478905, 0.9195171026, 0.4836956522],
        "F": [1.0, 0.9268292683, 1.0, 1.0, 1.0, 1.0, 0.9190854871],
        "J-stats": [0.831993736, 0.8571428571, 0.1906080062], "F-stats": [0.9779878222, 1.0, 0.0160670126]},
    2: {"J": [0.8740272374, 0.7572957198, 1.0, 0.8740272374, 0.0, 1.0, 0.8740272374],
        "F": [0.9865642994, 0.4331983806, 1.0, 0.9865642994, 0.0, 1.0, 0.9865642994],
        "J-stats": [0.7684824903, 0.8571428571, -0.0599059663], "F-stats": [0.7704130398, 0.7142857143, -0.1866945897]},
}


def test_agrees_with_official_evaluation_values():
    gts, preds = _golden_case()
    res = evaluate_sequence(gts, preds)
    for k, ref in OFFICIAL.items():
        np.testing.assert_allclose(res["J"][k], ref["J"], atol=1e-9)
        np.testing.assert_allclose(res["F"][k], ref["F"], atol=1e-9)
        s = res["stats"][k]
        np.testing.assert_allclose([s["J-Mean"], s["J-Recall"], s["J-Decay"]], ref["J-stats"], atol=1e-9)
        np.testing.assert_allclose([s["F-Mean"], s["F-Recall"], s["F-Decay"]], ref["F-stats"], atol=1e-9)


def test_summarize_and_csvs(tmp_path):
    gts, preds = _golden_case()
    summary = summarize({"golden": evaluate_sequence(gts, preds)})
    g = summary["global"]
    jm = np.mean([OFFICIAL[k]["J-stats"][0] for k in (1, 2)])
    fm = np.mean([OFFICIAL[k]["F-stats"][0] for k in (1, 2)])
    assert g["J-Mean"] == pytest.approx(jm) and g["F-Mean"] == pytest.approx(fm)
    assert g["J&F-Mean"] == pytest.approx((jm + fm) / 2)
    gp, op = write_csvs(tmp_path, summary)
    lines = gp.read_text().splitlines()
    assert lines[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
    assert lines[1].split(",")[0] == f"{(jm + fm) / 2:.3f}"
    rows = op.read_text().splitlines()
    assert rows[0] == "Sequence,J-Mean,F-Mean"
    assert rows[1] == f"golden_1,{OFFICIAL[1]['J-stats'][0]:.3f},{OFFICIAL[1]['F-stats'][0]:.3f}"
    assert len(rows) == 3 and math.isfinite(float(rows[2].split(",")[1]))
