"""Online target model (FRTM-fast): solver against autograd, memory, refit schedule, weights, errors."""
import subprocess
import sys

import numpy as np
import pytest

from edgevos.errors import InputError
from edgevos.target_model import (
    TargetModel,
    TargetModelConfig,
    augment_first_frame,
    fit_filter_lstsq,
    hinge_weights,
    init_objective,
)

C, K, H, W = 24, 12, 12, 16


def _ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[:h, :w]
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0).astype(np.float32)


def _samples(n, seed=0, c=C, h=H, w=W, noise=1.0):
    """Features where foreground pixels carry an extra direction; soft labels with blurred edges."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((c, h, w)).astype(np.float32)
    direction = rng.standard_normal(c).astype(np.float32)
    direction /= np.linalg.norm(direction)
    feats, labels = [], []
    for _ in range(n):
        y = _ellipse(h, w, h / 2 + rng.uniform(-2, 2), w / 2 + rng.uniform(-3, 3), h / 4, w / 4)
        y = np.clip(0.5 * y + 0.125 * (np.roll(y, 1, 0) + np.roll(y, -1, 0) + np.roll(y, 1, 1) + np.roll(y, -1, 1)), 0, 1)
        x = 0.5 * base + noise * rng.standard_normal((c, h, w)).astype(np.float32) + 3.0 * direction[:, None, None] * y
        feats.append(x.astype(np.float32))
        labels.append(y.astype(np.float32))
    return feats, labels


def _init_weights(n, first=2.0):
    a = np.ones(n)
    a[0] = first
    return a / a.sum()


def _torch_objective(torch, p, f, x, y, pw, a, cfg):
    s = torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, p[:, :, None, None]), f, padding=1)[:, 0]
    data = (a[:, None, None] * pw * (s - y) ** 2).sum()
    return data + cfg.reg_project * (p ** 2).sum() + cfg.reg_filter * (f ** 2).sum()


def test_first_frame_fit_reaches_autograd_reference_loss():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    cfg = TargetModelConfig(proj_dim=K)
    feats, labels = _samples(6, seed=1)
    a = _init_weights(6)
    # the starting point (PCA project, centre-tap filter) is what a zero-step schedule returns
    start = TargetModel(TargetModelConfig(proj_dim=K, init_gn_steps=0, init_cg_iters=()), C)
    start.initialize(feats[0], labels[0], feats[1:], labels[1:])
    ours = TargetModel(cfg, C)
    ours.initialize(feats[0], labels[0], feats[1:], labels[1:])
    np.testing.assert_allclose(start.project @ start.project.T / np.diag(start.project @ start.project.T).mean(),
                               np.eye(K), atol=1e-4)  # PCA rows are orthogonal

    x = torch.tensor(np.stack(feats), dtype=torch.float64)
    y = torch.tensor(np.stack(labels), dtype=torch.float64)
    pw = torch.tensor(np.stack([hinge_weights(l) for l in labels]), dtype=torch.float64)
    at = torch.tensor(a, dtype=torch.float64)
    p = torch.tensor(start.project, dtype=torch.float64, requires_grad=True)
    f = torch.tensor(start.filter, dtype=torch.float64, requires_grad=True)

    # same objective: our numpy value equals the conv2d/autograd formulation
    ref_start = float(_torch_objective(torch, p, f, x, y, pw, at, cfg).detach())
    ours_start = init_objective(start.project, start.filter, feats, labels, a, cfg)
    assert ours_start == pytest.approx(ref_start, rel=1e-5)

    opt = torch.optim.LBFGS([p, f], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _torch_objective(torch, p, f, x, y, pw, at, cfg)
        loss.backward()
        return loss

    for _ in range(4):
        opt.step(closure)
    ref_opt = float(_torch_objective(torch, p, f, x, y, pw, at, cfg).detach())
    ours_loss = init_objective(ours.project, ours.filter, feats, labels, a, cfg)
    assert ours.init_loss_history[-1] == pytest.approx(ours_loss, rel=1e-5)
    assert ours.init_loss_history[-1] < 0.5 * ours.init_loss_history[0]
    # the fast schedule (4 GN steps, 5/10/10/10 CG) lands within 3 % of the reference optimum
    assert abs(ours_loss - ref_opt) / ref_opt < 0.03, (ours_loss, ref_opt, ref_start)


def _tracked_model(solver="normal", n_updates=20, seed=2, **kw):
    cfg = TargetModelConfig(proj_dim=K, refit_solver=solver, **kw)
    feats, labels = _samples(6 + n_updates, seed=seed)
    tm = TargetModel(cfg, C)
    tm.initialize(feats[0], labels[0], feats[1:6], labels[1:6])
    for x, y in zip(feats[6:], labels[6:]):
        tm.update(x, y)
    return tm, feats, labels


def test_filter_refit_matches_closed_form_least_squares():
    torch = pytest.importorskip("torch")
    tm, _, _ = _tracked_model(n_updates=21, memory_size=24)
    mem = tm.memory()
    exact = fit_filter_lstsq(mem["z"], mem["labels"], mem["sample_weights"], tm.cfg.reg_filter, mem["pixel_weights"])
    # the closed form is a stationary point of the conv2d objective (autograd gradient ~ 0)
    f = torch.tensor(exact, dtype=torch.float64, requires_grad=True)
    z = torch.tensor(mem["z"], dtype=torch.float64)
    s = torch.nn.functional.conv2d(z, f, padding=1)[:, 0]
    a = torch.tensor(mem["sample_weights"])[:, None, None]
    loss = (a * torch.tensor(mem["pixel_weights"]) * (s - torch.tensor(mem["labels"])) ** 2).sum() \
        + tm.cfg.reg_filter * (f ** 2).sum()
    loss.backward()
    assert float(f.grad.abs().max()) < 1e-4 * max(1.0, float(loss.detach()))

    best = tm.loss(exact)
    before = tm.loss()
    tm.refit()  # default schedule: 5 warm-started CG iterations
    assert best * (1 - 1e-6) <= tm.loss() < before
    assert tm.loss() - best < 0.5 * (before - best)
    tm.refit(cg_iters=200)
    assert tm.loss() == pytest.approx(best, rel=1e-3)
    assert np.linalg.norm(tm.filter - exact) / np.linalg.norm(exact) < 1e-3


def test_normal_and_matrix_free_refits_agree():
    a, _, _ = _tracked_model("normal", n_updates=16, memory_size=12)  # full memory: replacements happen
    b, _, _ = _tracked_model("matrix_free", n_updates=16, memory_size=12)
    assert a.num_refits == b.num_refits == 2
    np.testing.assert_allclose(a.filter, b.filter, atol=1e-4 * np.abs(a.filter).max())
    # the incrementally kept normal matrix equals the one rebuilt from the memory
    a._flush_pending()
    mem = a.memory()
    rebuilt = sum(w * a._gram(i) for i, w in enumerate(mem["sample_weights"]))
    np.testing.assert_allclose(a._s, rebuilt, rtol=1e-5, atol=1e-5 * np.abs(rebuilt).max())


def test_classify_separates_foreground_from_background():
    feats, labels = _samples(8, seed=3)
    tm = TargetModel(TargetModelConfig(proj_dim=K), C)
    tm.initialize(feats[0], labels[0], feats[1:6], labels[1:6])
    for x, y in zip(feats[6:], labels[6:]):
        s = tm.classify(x)
        assert s.shape == (H, W) and s.dtype == np.float32
        fg, bg = s[y > 0.9], s[y < 0.01]
        assert fg.mean() > 0.6 and abs(bg.mean()) < 0.1
        # fg/bg ranking: almost every foreground pixel scores above almost every background pixel
        auc = (fg[:, None] > bg[None, :]).mean()
        assert auc > 0.97


def test_memory_weights_capacity_and_replacement():
    cfg = TargetModelConfig(proj_dim=K, memory_size=8, learning_rate=0.1, update_every=100, label_stride=1)
    feats, labels = _samples(12, seed=4)
    tm = TargetModel(cfg, C)
    tm.initialize(feats[0], labels[0], feats[1:3], labels[1:3])
    np.testing.assert_allclose(tm.sample_weights, [0.5, 0.25, 0.25])
    tm.update(feats[3], labels[3])
    np.testing.assert_allclose(tm.sample_weights, [0.45, 0.225, 0.225, 0.1])  # decayed by (1 - lr), new = lr
    # too few foreground pixels: not added, weights untouched
    before = tm.sample_weights
    tiny = np.zeros((H, W), np.float32)
    tiny[5, 5:14] = 0.9  # 9 pixels > 0.5
    tm.update(feats[4], tiny)
    assert tm.num_samples == 4
    np.testing.assert_array_equal(tm.sample_weights, before)
    for i in range(4, 8):
        tm.update(feats[i], labels[i])
    assert tm.num_samples == 8
    np.testing.assert_allclose(tm.sample_weights.sum(), 1.0)
    weights = tm.sample_weights
    lowest = int(np.argmin(weights))
    marker = labels[8].copy()
    marker[0, 0] = 0.123  # recognisable label
    tm.update(feats[8], marker)
    assert tm.num_samples == 8  # capacity kept
    mem = tm.memory()
    assert mem["labels"][lowest][0, 0] == pytest.approx(0.123)  # lowest-weight slot replaced
    expected = weights * 0.9
    expected[lowest] = 0.1
    np.testing.assert_allclose(tm.sample_weights, expected / expected.sum())


def test_refit_every_update_every_calls():
    cfg = TargetModelConfig(proj_dim=K, update_every=3)
    feats, labels = _samples(16, seed=5)
    tm = TargetModel(cfg, C)
    tm.initialize(feats[0], labels[0], feats[1:6], labels[1:6])
    flags = []
    for x, y in zip(feats[6:], labels[6:]):
        f_before = tm.filter.copy()
        flags.append(tm.update(x, y))
        assert np.array_equal(f_before, tm.filter) != flags[-1]
    assert flags == [False, False, True] * 3 + [False]
    # a refit call with nothing new in the memory is skipped
    empty = np.zeros((H, W), np.float32)
    assert [tm.update(feats[6], empty) for _ in range(2)] == [False, True]  # sample 16 was added before
    assert [tm.update(feats[6], empty) for _ in range(3)] == [False, False, False]


def test_refits_follow_frames_when_reused_frames_skip_updates():
    """A program that reuses 3 of 4 frames updates every 4th frame with frames=4: the filter is still
    refit every update_every frames (here every 2nd update), not every update_every updates."""
    from edgevos.errors import InputError

    cfg = TargetModelConfig(proj_dim=K, update_every=8)
    feats, labels = _samples(16, seed=5)
    tm = TargetModel(cfg, C)
    tm.initialize(feats[0], labels[0], feats[1:6], labels[1:6])
    assert [tm.update(x, y, frames=4) for x, y in zip(feats[6:12], labels[6:12])] == [False, True] * 3
    assert tm.num_calls == 24
    assert [tm.update(x, y, frames=3) for x, y in zip(feats[6:10], labels[6:10])] == [False, False, True, False]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="frames="):
            tm.update(feats[6], labels[6], frames=bad)


def test_hinge_weights_small_and_large_objects():
    small = np.zeros((20, 20), np.float32)
    small[:4, :5] = 1.0  # 20 px = 5 % < tf
    w = hinge_weights(small, tf=0.1)
    af = 20 / 400
    assert w[0, 0] == pytest.approx(0.1 / af) and w[10, 10] == pytest.approx(0.9 / (1 - af))
    assert w[small > 0.5].sum() / w.sum() == pytest.approx(0.1)  # the object carries tf of the weight
    large = np.zeros((20, 20), np.float32)
    large[:10] = 0.8
    np.testing.assert_array_equal(hinge_weights(large, tf=0.1), 1.0)
    tiny = np.zeros((20, 20), np.float32)
    tiny[0, :9] = 1.0  # fewer than 10 pixels: af := tf -> all ones
    np.testing.assert_array_equal(hinge_weights(tiny, tf=0.1), 1.0)


def test_bad_input_raises_input_error_naming_shapes():
    feats, labels = _samples(2, seed=6)
    tm = TargetModel(TargetModelConfig(proj_dim=K), C)
    with pytest.raises(InputError, match="before initialize"):
        tm.classify(feats[0])
    with pytest.raises(InputError, match=r"\(12, 16\)"):
        tm.initialize(feats[0][0], labels[0])  # 2-D features
    with pytest.raises(InputError, match="12x16"):
        tm.initialize(feats[0], labels[0][:, :8])  # label of another size
    with pytest.raises(InputError, match="vanished at the feature resolution"):
        tm.initialize(feats[0], np.zeros((H, W), np.float32))
    with pytest.raises(InputError, match="25 channels"):
        tm.initialize(np.zeros((25, H, W), np.float32), labels[0])
    with pytest.raises(InputError, match="1 augmented labels"):
        tm.initialize(feats[0], labels[0], [feats[1]] * 2, [labels[1]])
    tm.initialize(feats[0], labels[0])
    with pytest.raises(InputError, match=r"10x16 .*12x16"):
        tm.classify(feats[0][:, :10])
    with pytest.raises(InputError, match=r"\(12, 15\)"):
        tm.update(feats[1], labels[1][:, :15])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        tm.update(feats[1], labels[1] * 255)
    with pytest.raises(InputError, match="init_cg_iters"):
        TargetModelConfig(init_gn_steps=2, init_cg_iters=(5, 10, 10))


def test_state_dict_round_trip_continues_identically():
    tm, feats, labels = _tracked_model(n_updates=5)
    copy = TargetModel(tm.cfg, C)
    copy.load_state_dict(tm.state_dict())
    np.testing.assert_array_equal(copy.classify(feats[0]), tm.classify(feats[0]))
    for x, y in zip(feats[6:10], labels[6:10]):
        assert copy.update(x, y) == tm.update(x, y)
    np.testing.assert_allclose(copy.filter, tm.filter, rtol=1e-6, atol=1e-7)
    assert tm.num_refits == 1


def test_augment_first_frame_shapes_and_determinism():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[15:35, 20:40] = 1
    out = augment_first_frame(image, mask, 7, seed=3)
    assert len(out) == 7
    for im, m in out:
        assert im.shape == image.shape and im.dtype == np.uint8
        assert m.shape == mask.shape and set(np.unique(m)) <= {0, 1} and m.sum() > 0
    np.testing.assert_array_equal(out[0][1], mask[:, ::-1])  # first augmentation: horizontal flip
    again = augment_first_frame(image, mask, 7, seed=3)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(out, again))
    with pytest.raises(InputError, match="empty"):
        augment_first_frame(image, np.zeros_like(mask), 2, 0)
    with pytest.raises(InputError, match=r"\(48, 60\)"):
        augment_first_frame(image, mask[:, :60], 2, 0)


def test_augmented_copies_carry_the_other_objects_moved_with_the_frame():
    """``others``: every copy comes with the other objects transformed as the frame was (flipped,
    rotated, scaled), covered by the pasted object where it lands; the images and masks are the
    same as without them (the training cache encodes those)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[15:35, 10:25] = 1
    others = np.zeros_like(mask)
    others[10:30, 40:55] = 1
    plain = augment_first_frame(image, mask, 7, seed=3)
    out = augment_first_frame(image, mask, 7, seed=3, others=others)
    for (im, m), (im2, m2, o2) in zip(plain, out):
        np.testing.assert_array_equal(im, im2)
        np.testing.assert_array_equal(m, m2)
        assert o2.shape == mask.shape and not (o2 & m2).any()
    np.testing.assert_array_equal(out[0][2], others[:, ::-1])  # the flip moves them too
    assert out[2][2].sum() > 0 and not np.array_equal(out[2][2], others)  # rotated with the frame
    with pytest.raises(InputError, match="others"):
        augment_first_frame(image, mask, 2, 0, others=others[:, :60])
    # the target model weighs them in each augmented sample; one map per sample or none
    cfg = TargetModelConfig(proj_dim=8, num_augmentations=2, other_objects_weight=20.0)
    tm = TargetModel(cfg, in_channels=C)
    feats, labels = _samples(3, h=12, w=16)
    aug_others = [np.zeros((12, 16), np.float32), np.ones((12, 16), np.float32) * 0.5]
    tm.initialize(feats[0], labels[0], feats[1:], labels[1:], aug_others=aug_others)
    from edgevos.target_model import hinge_weights

    pw = tm.memory()["pixel_weights"]
    base = hinge_weights(labels[2], cfg.tf, cfg.min_fg_pixels, cfg.label_stride ** 2)
    np.testing.assert_allclose(pw[1], hinge_weights(labels[1], cfg.tf, cfg.min_fg_pixels, cfg.label_stride ** 2))
    np.testing.assert_allclose(pw[2], base * (1 + 19 * 0.5), rtol=1e-6)  # the second copy's others, half a cell each
    with pytest.raises(InputError, match="augmented 'others'"):
        TargetModel(cfg, in_channels=C).initialize(feats[0], labels[0], feats[1:], labels[1:], aug_others=aug_others[:1])


def test_import_does_not_load_torch():
    code = "import edgevos.target_model, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_small_objects_are_counted_at_image_resolution():
    """A stride-16 label cell covers 256 image pixels: an object of 3 cells (768 px, 0.7% of a
    256x448 frame) keeps FRTM's hinge weighting and enters the memory."""
    label = np.zeros((16, 28), np.float32)
    label[5, 5:8] = 1.0
    w = hinge_weights(label, tf=0.1, min_fg_pixels=10, pixel_area=16 ** 2)
    af = 3 / label.size
    np.testing.assert_allclose(w[5, 5], 0.1 / af, rtol=1e-6)
    np.testing.assert_allclose(w[0, 0], 0.9 / (1 - af), rtol=1e-6)
    # counted in label cells (the old rule) the same object got no weighting at all
    np.testing.assert_array_equal(hinge_weights(label, tf=0.1, min_fg_pixels=10, pixel_area=1.0), 1.0)

    feats, labels = _samples(3, seed=2)
    tm = TargetModel(TargetModelConfig(proj_dim=K, update_every=100), C)
    tm.initialize(feats[0], labels[0])
    one_cell = np.zeros((H, W), np.float32)
    one_cell[3, 3] = 1.0
    tm.update(feats[1], one_cell)
    assert tm.num_samples == 2


def test_first_frame_augmentations_include_cut_and_paste():
    from edgevos.target_model import augment_first_frame

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[10:20, 10:25] = 1
    out = augment_first_frame(img, mask, 5, seed=3)
    im_p, m_p = out[1]  # flip, cut-and-paste, rotate, scale, blur
    assert m_p.sum() == mask.sum() and not np.array_equal(m_p, mask)  # same object, elsewhere
    ys, xs = np.nonzero(m_p)
    np.testing.assert_array_equal(im_p[ys.min():ys.max() + 1, xs.min():xs.max() + 1], img[10:20, 10:25])
    assert not np.array_equal(im_p[10:20, 10:25], img[10:20, 10:25]) or (ys.min(), xs.min()) == (10, 10)


def test_an_object_smaller_than_a_feature_cell_still_gets_a_target_model():
    """A small object covers no stride-16 cell by more than half: its most covered cells are taken as it."""
    feats, _ = _samples(1, seed=3)
    label = np.zeros((H, W), np.float32)
    label[5, 7], label[5, 8] = 0.3, 0.15  # ~115 image pixels at stride 16
    tm = TargetModel(TargetModelConfig(proj_dim=K), C)
    tm.initialize(feats[0], label)
    score = tm.classify(feats[0])
    assert score[5, 7] > np.median(score)



def test_other_objects_weighed_as_negatives_separate_two_similar_objects():
    """Two objects whose features differ only slightly: with the other object's cells weighed
    ``other_objects_weight`` times as negatives (first frame and updates) this object's target model
    scores the other object lower than with FRTM's plain weights, and its own cells still positive."""
    rng = np.random.default_rng(0)
    c, h, w = 16, 14, 20
    a = rng.standard_normal(c).astype(np.float32)
    d = rng.standard_normal(c).astype(np.float32)
    ya = _ellipse(h, w, 5, 5, 3, 3)
    yb = _ellipse(h, w, 8, 14, 3, 3)

    def feats(seed):
        r = np.random.default_rng(seed)
        x = r.standard_normal((c, h, w)).astype(np.float32)
        x += 3.0 * a[:, None, None] * np.maximum(ya, yb) + 1.0 * d[:, None, None] * yb
        return x.astype(np.float32)

    scores = {}
    for weight in (1.0, 20.0):
        cfg = TargetModelConfig(proj_dim=8, num_augmentations=0, update_every=1, other_objects_weight=weight)
        tm = TargetModel(cfg, in_channels=c, seed=0)
        tm.initialize(feats(1), ya, others=yb)
        for i in range(2, 5):
            tm.update(feats(i), ya, others=yb)
        s = tm.classify(feats(9))
        scores[weight] = (float(s[ya > 0.5].mean()), float(s[yb > 0.5].mean()))
    assert scores[20.0][1] < scores[1.0][1] - 0.1  # the other object looks less like this one
    assert scores[20.0][0] > scores[20.0][1] + 0.3  # and its own cells still stand out
    with pytest.raises(InputError, match="other_objects_weight"):
        TargetModelConfig(other_objects_weight=0.5)
    tm = TargetModel(TargetModelConfig(proj_dim=8, num_augmentations=0), in_channels=c)
    with pytest.raises(InputError, match="others"):
        tm.initialize(feats(1), ya, others=yb[:5])
