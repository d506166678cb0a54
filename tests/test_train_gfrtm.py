"""G-FRTM-fast training: a few steps end to end, single process and under torchrun."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _train_args(out):
    return ["train", "gfrtm", "--synthetic", "3", "--max-frames", "6", "--out", str(out),
            "--phase1-steps", "4", "--phase2-steps", "3", "--batch", "2", "--input-size", "128x224"]


def test_train_few_steps_checkpoint_resume_and_final_weights(tmp_path):
    from edgevos.cli import main
    from edgevos.models.weights import load_checkpoint

    assert main(_train_args(tmp_path / "run")) == 0
    ck = load_checkpoint("gfrtm", tmp_path / "run" / "gfrtm_final.pt")
    assert tuple(ck["config"]["input_size"]) == (128, 224)
    assert all(n.startswith("synthetic") for n in ck["meta"]["sequences"])
    # resume: a finished run has nothing left to do and writes the same final weights
    assert main(_train_args(tmp_path / "run")) == 0
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert any('"phase": 1' in line for line in log) and any('"phase": 2' in line for line in log)


def test_a_continued_run_keeps_the_backbone_of_its_init_and_its_cache_refuses_another(tmp_path):
    """Without --backbone-weights, --init's frozen backbone is the one trained on and saved (it once
    saved a continued reuse path on a freshly initialised backbone: 31 J&F); a feature cache made with
    one backbone refuses a model with another."""
    from edgevos.cli import main
    from edgevos.errors import InputError
    from edgevos.models.weights import load_checkpoint, save_checkpoint
    from edgevos.train.gfrtm import Trainer, TrainConfig
    from edgevos.train.gfrtm_cache import check_backbone

    assert main(_train_args(tmp_path / "a")) == 0
    first = Trainer(TrainConfig(out=str(tmp_path / "x"), input_size=(128, 224), synthetic=0,
                                init=str(tmp_path / "a" / "gfrtm_final.pt"))).model
    with torch.no_grad():
        first.backbone.features[0][0].weight.mul_(1.5)  # a backbone no fresh model starts with
    save_checkpoint(tmp_path / "init.pt", "gfrtm", first)
    args = _train_args(tmp_path / "b") + ["--phases", "2", "--init", str(tmp_path / "init.pt")]
    assert main(args) == 0
    saved = load_checkpoint("gfrtm", tmp_path / "b" / "gfrtm_final.pt")["state_dict"]
    want = first.state_dict()
    keys = [k for k in want if k.startswith("backbone.")]
    assert keys and all(torch.allclose(saved[k].float(), want[k].float(), atol=1e-2) for k in keys)
    fresh = Trainer(TrainConfig(out=str(tmp_path / "y"), input_size=(128, 224), synthetic=0)).model
    with pytest.raises(InputError, match="another backbone"):
        check_backbone(fresh, tmp_path / "b" / "cache")
    check_backbone(first, tmp_path / "b" / "cache")  # the backbone that made it


@pytest.mark.slow
def test_torchrun_two_processes_average_gradients(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "edgevos"] + _train_args(tmp_path / "ddp"),
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "ddp" / "gfrtm_final.pt").is_file()
    assert len((tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()) >= 1  # rank 0 only


# ---------------------------------------------------------------- training samples as the run time makes them
def _tiny_trainer(tmp_path, **kw):
    from edgevos.train.gfrtm import TrainConfig, Trainer

    return Trainer(TrainConfig(out=str(tmp_path / "run"), input_size=(64, 96), synthetic=0, num_augmentations=2, **kw))


def _seq(seed, n=8, objects=1):
    from edgevos.data import SyntheticConfig, make_sequence

    return make_sequence(SyntheticConfig(height=64, width=96, num_frames=n, num_objects=objects, seed=seed,
                                         name=f"s{seed}"))


def test_flipped_samples_are_the_features_of_flipped_frames(tmp_path):
    """A mirrored feature map is not the feature map of a mirrored image: flipped samples must be encoded."""
    from edgevos.train.gfrtm import _encode, build_cache, load_cache

    tr = _tiny_trainer(tmp_path)
    seq = _seq(1)
    tr.cache = load_cache(build_cache(tr.model, [seq], tr.cfg, tmp_path / "cache", [True]))
    c = tr.cache[0]
    from edgevos.train.gfrtm import _resize_frame

    frame = _resize_frame(seq.frame(3), (64, 96))
    want = _encode(tr.model, np.ascontiguousarray(frame[:, ::-1]))
    got = [t[0].numpy() for t in tr._feats(c, 3, True)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.astype(np.float32), atol=1e-3)
    mirrored = c["f8"][3].astype(np.float32)[..., ::-1]
    assert np.abs(got[1] - mirrored).mean() > 0.05 * np.abs(mirrored).mean()
    np.testing.assert_array_equal(tr._feats(c, 3, False)[1][0].numpy(), c["f8"][3].astype(np.float32))


def _fake_tracks(n_real, n_synth, T=40):
    from edgevos.train.gfrtm import Track

    z = np.zeros((T, 4, 6), np.float32)
    return [Track(i, 1, 0, z, False, True) for i in range(n_real)] + \
        [Track(n_real + i, 1, 0, z, False, False) for i in range(n_synth)]


def test_real_sequences_dominate_the_samples(tmp_path):
    tr = _tiny_trainer(tmp_path, real_share=0.8)
    tr.teacher = tr.tracks = _fake_tracks(3, 30)  # many more generated tracks than real ones
    tr.runtime = []
    real = np.mean([tr._sample(False)[0].real for _ in range(3000)])
    assert 0.77 < real < 0.83


def test_gate_sees_long_gaps(tmp_path):
    tr = _tiny_trainer(tmp_path)
    tr.teacher = tr.tracks = _fake_tracks(2, 0, T=80)
    tr.runtime = []
    gaps = []
    for _ in range(2000):
        _, t, prev, _ = tr._sample(True)
        assert 0 <= prev < t
        gaps.append(t - prev)
    assert max(gaps) >= 20 and np.mean(np.array(gaps) > 5) > 0.5


def test_run_time_tracks_update_with_predicted_masks_not_ground_truth(tmp_path, mobilenet_weights):
    """With a decoder that predicts nothing, run-time tracks never learn from later frames
    (the ground truth would have taught the target model), and they start at random frames too."""
    from edgevos.train.gfrtm import TargetFeatures, _new_target_model, build_cache, load_cache, runtime_tracks, score_tracks

    tr = _tiny_trainer(tmp_path, random_starts=2, backbone_weights=str(mobilenet_weights))
    tr.cache = load_cache(build_cache(tr.model, [_seq(2, n=12)], tr.cfg, tmp_path / "cache", [True]))
    with torch.no_grad():
        tr.model.predict.bias.fill_(-60.0)  # sigmoid ~ 0 everywhere: no update enters the memory
    rt = runtime_tracks(tr.model, tr.cache, tr.cfg, np.random.default_rng(0))
    teacher = score_tracks(tr.model, tr.cache, tr.cfg)
    assert {t.flip for t in rt} == {False, True} and any(t.ref > 0 for t in rt)
    r0 = next(t for t in rt if t.ref == 0 and not t.flip)
    t0 = next(t for t in teacher if not t.flip)
    hw16 = r0.scores.shape[1:]
    frozen = _new_target_model(TargetFeatures(tr.model), tr.cache[0], r0.obj_id, False, 0, hw16, tr.cfg)
    f16 = tr.cache[0]["f16"].astype(np.float32)
    assert np.abs(r0.scores[1]).max() > 0.1  # a real score map, not a degenerate one
    for t in range(1, len(f16)):
        np.testing.assert_allclose(r0.scores[t], frozen.classify(f16[t]), atol=1e-4)
    assert np.abs(r0.scores[9:] - t0.scores[9:]).max() > 1e-2  # teacher forcing refits at frame 8


def test_residual_reuse_head_trains_from_a_checkpoint_with_its_reuse_path(tmp_path):
    """--init-reuse-path continues phase 2 from a trained reuse path; a residual head starts at zero."""
    from edgevos.cli import main
    from edgevos.models.weights import load_checkpoint
    from edgevos.train.gfrtm import TrainConfig, Trainer

    half = ["--reuse-scale", "2", "--refiner-stride", "16"]
    assert main(_train_args(tmp_path / "a") + half) == 0
    first = load_checkpoint("gfrtm", tmp_path / "a" / "gfrtm_final.pt")
    tr = Trainer(TrainConfig(out=str(tmp_path / "b"), input_size=(128, 224), synthetic=0, reuse_scale=2,
                             refiner_stride=16, reuse_head="residual", init=str(tmp_path / "a" / "gfrtm_final.pt"),
                             init_reuse_path=True))
    own = tr.model.state_dict()
    for k in ("gate.", "matcher.", "translator.", "reuse_level.", "level4."):
        keys = [n for n in first["state_dict"] if n.startswith(k)]
        assert keys and all(torch.equal(own[n], first["state_dict"][n].float()) for n in keys), k
    assert not own["reuse_predict.weight"].any() and not own["reuse_predict.bias"].any()
    args = _train_args(tmp_path / "c") + half + ["--reuse-head", "residual", "--init-reuse-path", "--phases", "2",
                                                 "--init", str(tmp_path / "a" / "gfrtm_final.pt")]
    assert main(args) == 0
    out = load_checkpoint("gfrtm", tmp_path / "c" / "gfrtm_final.pt")
    assert out["config"]["reuse_head"] == "residual"
    assert out["state_dict"]["reuse_predict.weight"].float().abs().sum() > 0  # phase 2 moved the correction
    blend = Trainer(TrainConfig(out=str(tmp_path / "d"), input_size=(128, 224), synthetic=0, reuse_scale=2,
                                refiner_stride=16, reuse_head="blend", init=str(tmp_path / "a" / "gfrtm_final.pt"),
                                init_reuse_path=True)).model
    w = blend.reuse_predict.weight
    assert torch.equal(w[:1], first["state_dict"]["reuse_predict.weight"].float()) and not w[1:].any()
    assert float(blend.reuse_predict.bias[1].detach()) == -2.0
    # a blend head seeds a warp head as it is (its motion field starts at zero: the blend head's function)
    from edgevos.models.weights import save_checkpoint

    with torch.no_grad():
        blend.reuse_predict.weight.normal_()
    save_checkpoint(tmp_path / "blend.pt", "gfrtm", blend)
    warp = Trainer(TrainConfig(out=str(tmp_path / "w"), input_size=(128, 224), synthetic=0, reuse_scale=2,
                               refiner_stride=16, reuse_head="warp", init=str(tmp_path / "blend.pt"),
                               init_reuse_path=True)).model
    assert torch.equal(warp.reuse_predict.weight, blend.reuse_predict.weight)
    assert not warp.reuse_warp.out.weight.any() and not warp.reuse_warp.out.bias.any()
    args = _train_args(tmp_path / "wr") + half + ["--reuse-head", "warp", "--init-reuse-path", "--phases", "2",
                                                  "--init", str(tmp_path / "blend.pt")]
    assert main(args) == 0  # phase 2 moves the motion field off zero, with a loss of its own in the log
    assert load_checkpoint("gfrtm", tmp_path / "wr" / "gfrtm_final.pt")["state_dict"]["reuse_warp.out.weight"].any()
    assert '"warp"' in (tmp_path / "wr" / "train_log.jsonl").read_text()
    # --reuse-path-from: the segmentation network of --init, the reuse path of another checkpoint
    import edgevos

    shipped = Path(edgevos.__file__).parent / "weights" / "gfrtm_default.pt"
    src = load_checkpoint("gfrtm", shipped)["state_dict"]
    head = load_checkpoint("gfrtm", shipped)["config"]["reuse_head"]
    mixed = Trainer(TrainConfig(out=str(tmp_path / "e"), input_size=(128, 224), synthetic=0, reuse_scale=2,
                                refiner_stride=16, reuse_head=head, computed_embed="f8",
                                init=str(tmp_path / "a" / "gfrtm_final.pt"),
                                reuse_path_from=str(shipped))).model.state_dict()
    for k, want in (("gate.", src), ("translator.", src), ("reuse_predict.", src), ("level4.", first["state_dict"]),
                    ("predict.", first["state_dict"])) + ((("reuse_warp.", src),) if head == "warp" else ()):
        keys = [n for n in want if n.startswith(k)]
        assert keys and all(torch.equal(mixed[n], want[n].float()) for n in keys), k
    from edgevos.errors import InputError

    if head == "warp":  # a warp head's motion field does not fit a blend head: refused, naming the fix
        with pytest.raises(InputError, match="--reuse-head warp"):
            Trainer(TrainConfig(out=str(tmp_path / "f"), input_size=(128, 224), synthetic=0, reuse_scale=2,
                                refiner_stride=16, reuse_head="blend", computed_embed="f8",
                                init=str(tmp_path / "a" / "gfrtm_final.pt"), reuse_path_from=str(shipped)))



@pytest.mark.parametrize("inputs", [("f16", "f32"), ("f16", "f8")])
def test_training_target_model_reads_what_the_program_reads(tmp_path, mobilenet_weights, inputs):
    """With target_inputs f16+f32 or f16+f8 the training tracks' target model sees the program's
    features (f32 upsampled, f8 pooled to stride 16), on cached frames and on the augmented first
    frames (their f8 cached, their f32 recomputed from their cached f16)."""
    from edgevos.errors import InputError
    from edgevos.programs.base import Timer, resize_image, to_input
    from edgevos.runtime.session import Session
    from edgevos.target_model import augment_first_frame
    from edgevos.train.gfrtm import TargetFeatures, _new_target_model, build_cache, load_cache

    tr = _tiny_trainer(tmp_path, backbone_weights=str(mobilenet_weights), proj_dim=16, target_inputs=inputs)
    assert tr.model.config.target_inputs == inputs and tr.model.config.proj_dim == 16
    seq = _seq(3, n=6)
    tr.cache = load_cache(build_cache(tr.model, [seq], tr.cfg, tmp_path / "cache", [True]))
    tf = TargetFeatures(tr.model)
    prog = Session.from_model(tr.model, num_augmentations=0).program

    def program_features(img):
        x = to_input(resize_image(np.ascontiguousarray(img), tr.cfg.input_size), tr.cfg.input_size)
        return prog._target_features(prog._encode(x, Timer()))

    want = program_features(seq.frame(2))
    got = tf.frame(tr.cache[0], False, 2)
    assert got.shape == want.shape == (prog.c_target,) + want.shape[1:]
    np.testing.assert_allclose(got, want, atol=0.05)  # the cache stores fp16
    c = tr.cache[0]
    aug = tf.augmented(c["aug_f16_1"], c["aug_f8_1"])
    img0 = np.ascontiguousarray(resize_image(np.ascontiguousarray(seq.frame(0)), tr.cfg.input_size))
    m0 = (cv2.resize(seq.mask(0), img0.shape[1::-1], interpolation=cv2.INTER_NEAREST) == 1).astype(np.uint8)
    augs = list(augment_first_frame(img0, m0, tr.cfg.num_augmentations, tr.cfg.seed))
    assert len(aug) == len(augs) == 2
    np.testing.assert_allclose(aug[1], program_features(augs[1][0]), atol=0.05)
    tm = _new_target_model(tf, c, 1, False, 0, want.shape[1:], tr.cfg)
    assert tm.in_channels == prog.c_target
    score = tm.classify(tf.frame(c, False, 1))
    assert score.shape == want.shape[1:] and np.isfinite(score).all()
    assert tr._tm_tag == "_k16_" + "+".join(inputs)
    if "f8" in inputs:  # a cache made before augmented f8 was stored: a clear error, not a shape mismatch
        with pytest.raises(InputError, match="delete the run's cache"):
            tf.augmented(c["aug_f16_1"], None)


def test_composites_paste_other_training_objects_into_training_sequences(tmp_path):
    """--composites N: N real clips, each a training sequence with one or two other training
    sequences' objects pasted in (ids 2, 3), at the training size; the feature cache takes
    them like any sequence (one target-model track per object); no other sequence enters."""
    from edgevos.errors import InputError
    from edgevos.train.gfrtm import build_cache, load_cache

    tr = _tiny_trainer(tmp_path, composites=3)
    train = [_seq(s, n=6) for s in (11, 12, 13)]
    comps = tr.composites(train)
    assert len(comps) == 3
    for c in comps:
        parts = c.name.split("-", 2)[2].split("+")
        assert c.name.startswith("composite-") and 2 <= len(parts) <= 3
        assert set(parts) <= {"s11", "s12", "s13"} and len(set(parts)) == len(parts)
        assert c.frame(0).shape[:2] == (64, 96) and len(c) == 6
        ids = set(np.unique(c.mask(0))) - {0}
        assert ids <= set(range(1, len(parts) + 1)) and 1 in ids
    assert [c.name for c in tr.composites(train)] == [c.name for c in comps]  # seeded
    cache = load_cache(build_cache(tr.model, comps[:1], tr.cfg, tmp_path / "cache", [True]))
    assert cache[0]["f16"].shape[0] == 6 and "aug_f8_1" in cache[0] and cache[0]["masks"].max() >= 2
    with pytest.raises(InputError, match="--composites 3"):
        tr.composites(train[:1])


def test_composites_take_up_to_composite_objects_pasted_sequences(tmp_path):
    from edgevos.errors import InputError
    from edgevos.train.composites import composite_clips

    train = [_seq(s, n=4) for s in (11, 12, 13, 14, 15)]
    counts = {len(c.name.split("-", 2)[2].split("+")) - 1 for c in composite_clips(train, 12, 0, (64, 96), 3)}
    assert counts == {1, 2, 3}
    assert {len(c.object_ids) for c in composite_clips(train, 6, 0, (64, 96), 1)} <= {2}
    with pytest.raises(InputError, match="--composite-objects 0"):
        composite_clips(train, 2, 0, (64, 96), 0)


def test_saved_tracks_are_reused_only_for_the_same_sequences(tmp_path):
    """Track files hold sequence indices: a run with another sequence set (e.g. --composites)
    sharing the cache folder must not read them."""
    from edgevos.train.gfrtm_tracks import Track, load_tracks, save_tracks

    tracks = [Track(1, 1, 0, np.ones((3, 2, 2), np.float32), flip=True, real=False)]
    p = tmp_path / "tracks.npz"
    save_tracks(p, tracks, ["a", "b"])
    got = load_tracks(p, ["a", "b"])
    assert got is not None and (got[0].seq, got[0].flip, got[0].real) == (1, True, False)
    np.testing.assert_array_equal(got[0].scores, tracks[0].scores)
    assert load_tracks(p, ["a", "c"]) is None and load_tracks(p, ["a"]) is None
    save_tracks(p, tracks)  # no names recorded: never taken for a named sequence set
    assert load_tracks(p, ["a", "b"]) is None and len(load_tracks(p)) == 1


def _gate_target_setup(tr):
    """(model, features of a random frame, a score map, a two-frame track of it) for P_target checks."""
    from edgevos.train.gfrtm import Track

    m = tr.model.eval()
    with torch.no_grad():
        f4, f8 = m.encode_low(torch.rand(1, 3, 64, 96))
        feats = [f4, f8, *m.encode_high(f8)]
    score = np.random.default_rng(0).normal(size=feats[2].shape[-2:]).astype(np.float32)
    return m, feats, score, Track(0, 1, 0, np.stack([score, score]), False, True)


def test_agreement_gate_target_measures_the_reused_mask_against_a_computed_one(tmp_path):
    """``--gate-target agreement``: P_target is the IoU of the reused frame's mask with the mask the
    computed path gives on the same frame, not how far the object moved."""
    tr = _tiny_trainer(tmp_path, gate_target="agreement")
    m, feats, score, track = _gate_target_setup(tr)
    y = np.zeros((64, 96), bool)
    y[10:40, 20:60] = True
    with torch.no_grad():
        full = m.decode_full(*feats, torch.from_numpy(score)[None, None])[0]
    full = torch.nn.functional.interpolate(full, size=(64, 96), mode="bilinear", align_corners=False)
    same = tr._gate_target(m, full, y, y, feats, track, 1)
    flipped = tr._gate_target(m, -full, y, y, feats, track, 1)
    assert same == pytest.approx(1.0)
    assert flipped < 0.5  # the object did not move (mask IoU 1), but the reused mask disagrees
    assert _tiny_trainer(tmp_path)._gate_target(m, -full, y, y, feats, track, 1) == pytest.approx(1.0)


def test_phase2_trains_the_image_guided_refine_on_cached_half_frames(tmp_path):
    """--reuse-refine: the cache keeps each frame at half resolution (as the program feeds
    ``image_half``), phase 2 trains the refine (it leaves its zero start) and the checkpoint rebuilds it."""
    from edgevos.cli import main
    from edgevos.models.weights import load_checkpoint

    out = tmp_path / "run"
    args = _train_args(out) + ["--reuse-scale", "2", "--refiner-stride", "16", "--reuse-head", "blend",
                               "--reuse-refine", "8", "--phase2-steps", "4"]
    assert main(args) == 0
    half = np.load(next((out / "cache").glob("synthetic-000.imgh.npz")))["imgh"]
    assert half.dtype == np.uint8 and half.shape[1:] == (64, 112, 3)
    ck = load_checkpoint("gfrtm", out / "gfrtm_final.pt")
    assert ck["config"]["reuse_refine"] == 8
    assert float(ck["state_dict"]["reuse_refine.out.weight"].float().abs().sum()) > 0
    from edgevos.models.registry import get_family

    m = get_family("gfrtm").build(weights=str(out / "gfrtm_final.pt"))
    assert "image_half" in {s.name: s for s in m.stage_specs()}["decoder_reuse"].input_names


def test_phase2_trains_the_computed_frame_embedding_from_the_gates_own(tmp_path):
    """--computed-embed f8: phase 2 compares each frame with the previous frame's f8 embedding (as
    the program does); ``embed_full`` starts as the gate's embedding convs when --init has none, and
    trains away from them."""
    import torch

    from edgevos.cli import main
    from edgevos.models.weights import load_checkpoint

    first = tmp_path / "h8"
    base = _train_args(first) + ["--reuse-scale", "2", "--refiner-stride", "16", "--reuse-head", "blend",
                                 "--phase2-steps", "2"]
    assert main(base) == 0
    def f8_args(out, steps):
        return _train_args(out) + ["--reuse-scale", "2", "--refiner-stride", "16", "--reuse-head", "blend",
                                   "--computed-embed", "f8", "--phases", "2", "--phase2-steps", str(steps),
                                   "--init", str(first / "gfrtm_final.pt"), "--init-reuse-path"]

    assert main(f8_args(tmp_path / "f8", 0)) == 0
    ck = load_checkpoint("gfrtm", tmp_path / "f8" / "gfrtm_final.pt")
    sd = ck["state_dict"]
    assert ck["config"]["computed_embed"] == "f8"
    assert ck["config"]["gate_max_gap"] == 25  # --max-gap's default: the program's default reuse cap
    for key in ("0.0.weight", "1.weight"):  # Sequential(conv = [Conv2d, ReLU], Conv2d)
        torch.testing.assert_close(sd[f"embed_full.{key}"].float(), sd[f"matcher.embed.{key}"].float())
    assert main(f8_args(tmp_path / "f8-trained", 3)) == 0
    sd2 = load_checkpoint("gfrtm", tmp_path / "f8-trained" / "gfrtm_final.pt")["state_dict"]
    assert not torch.allclose(sd2["embed_full.1.weight"].float(), sd["embed_full.1.weight"].float())


def test_bce_gate_loss_keeps_a_gradient_where_reuse_decisions_fall(tmp_path):
    """--gate-loss bce: near P_gate 1 the squared error's gradient on the gate's logit vanishes
    (2 (p - t) p (1 - p)); the cross-entropy's stays p - t, so targets 0.92 and 0.99 stay apart.
    Both losses are zero-gradient at the target; the CLI trains with it."""
    import torch

    from edgevos.cli import main
    from edgevos.models.weights import load_checkpoint
    from edgevos.train.gate_loss import gate_probability_loss

    def grad(kind, p, t):
        z = torch.tensor([[float(np.log(p / (1 - p)))]], requires_grad=True)
        gate_probability_loss(torch.sigmoid(z), torch.tensor([[t]]), 0.0, kind).backward()
        return float(z.grad)

    assert grad("bce", 0.97, 0.92) == pytest.approx(0.05, abs=1e-4)
    assert abs(grad("squared", 0.97, 0.92)) < 0.1 * abs(grad("bce", 0.97, 0.92))
    for kind in ("bce", "squared"):
        assert grad(kind, 0.92, 0.92) == pytest.approx(0.0, abs=1e-6)
    out = tmp_path / "run"
    assert main(_train_args(out) + ["--gate-loss", "bce", "--gate-target", "agreement"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["gate_loss"] == "bce"
    assert load_checkpoint("gfrtm", out / "gfrtm_final.pt")["state_dict"]


def test_accuracy_gate_target_charges_only_what_the_reused_mask_loses_against_the_truth(tmp_path):
    """``--gate-target accuracy``: P_target = 1 - scale * max(0, J(computed) - J(reused)); a reused mask
    that disagrees with the computed one but is as good against the truth costs nothing (agreement
    would charge it), one that loses IoU where the computed mask was right costs scale times that."""
    from edgevos.metrics import agreement_iou

    tr = _tiny_trainer(tmp_path, gate_target="accuracy", gate_drop_scale=4.0)
    m, feats, score, track = _gate_target_setup(tr)
    with torch.no_grad():
        full = m.decode_full(*feats, torch.from_numpy(score)[None, None])[0]
    full = torch.nn.functional.interpolate(full, size=(64, 96), mode="bilinear", align_corners=False)
    computed = (full[0, 0].numpy() > 0).astype(np.uint8)
    y = computed.astype(bool).copy()
    y[:, :48] = ~y[:, :48]  # the truth: right half as computed, left half the opposite
    mirrored = full.clone()
    mirrored[..., 48:] = -mirrored[..., 48:]  # wrong on both halves: worse than computed against y
    j_computed = agreement_iou(computed, y.astype(np.uint8))
    j_mirrored = agreement_iou((mirrored[0, 0].numpy() > 0).astype(np.uint8), y.astype(np.uint8))
    got = tr._gate_target(m, mirrored, y, y, feats, track, 1)
    assert got == pytest.approx(max(0.0, 1.0 - 4.0 * max(0.0, j_computed - j_mirrored)), abs=1e-6)
    assert tr._gate_target(m, full, y, y, feats, track, 1) == pytest.approx(1.0)  # nothing lost
    truth_like = torch.from_numpy(np.where(y, 5.0, -5.0).astype(np.float32))[None, None]
    assert tr._gate_target(m, truth_like, y, y, feats, track, 1) == pytest.approx(1.0)  # better than computed: free
    agree = _tiny_trainer(tmp_path, gate_target="agreement")
    assert agree._gate_target(m, truth_like, y, y, feats, track, 1) < 0.9  # agreement charges it
