"""G-FRTM-fast: stages, step program, reuse-gate semantics, bad input."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgevos.errors import InputError  # noqa: E402
from edgevos.models.registry import get_family  # noqa: E402
from edgevos.backend import TorchBackend  # noqa: E402
from edgevos.runtime.session import Session  # noqa: E402

SIZE = (64, 128)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return get_family("gfrtm").build(input_size=SIZE)


def _frames(n=6, h=60, w=100, seed=0):
    from edgevos.data import SyntheticConfig, make_sequence

    seq = make_sequence(SyntheticConfig(height=h, width=w, num_frames=n, num_objects=2, seed=seed))
    return seq


def test_every_stage_runs_alone_on_its_fixed_shapes(model):
    mods = model.stage_modules()
    names = [s.name for s in model.stage_specs()]
    assert names == ["encoder_low", "encoder_high", "gate_template", "gate", "decoder_full", "decoder_reuse"]
    for spec in model.stage_specs():
        feeds = spec.dummy_feeds()
        with torch.inference_mode():
            outs = mods[spec.name](*[torch.from_numpy(feeds[n]) for n in spec.input_names])
        assert [tuple(o.shape) for o in outs] == [t.shape for t in spec.outputs], spec.name


def test_gate_is_a_probability_and_stages_are_pure(model):
    be = TorchBackend(model.stage_modules(), model.stage_specs())
    feeds = be.spec("gate").dummy_feeds(3)
    a = be.run("gate", feeds)
    b = be.run("gate", feeds)
    assert a["p_gate"].shape == (1, 1) and 0.0 <= float(a["p_gate"][0, 0]) <= 1.0
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_backbone_weights_load_strictly(mobilenet_weights):
    from edgevos.models.backbones import MobileNetV2, load_torchvision_weights

    m = MobileNetV2()
    before = m.features[0][0].weight.clone()
    load_torchvision_weights(m, mobilenet_weights)
    assert not torch.equal(before, m.features[0][0].weight)
    with pytest.raises(InputError, match="does not fit"):
        from edgevos.models.backbones import ResNet18

        load_torchvision_weights(ResNet18(), mobilenet_weights)


def test_tau_one_never_runs_the_gate(model):
    seq = _frames()
    s = Session.from_model(model, tau=1.0, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    for i in range(1, len(seq)):
        r = s.step(seq.frame(i))
        assert not r.reused and r.p_gate is None and "gate" not in r.stage_ms
        assert "encoder_high" in r.stage_ms and "decoder_full" in r.stage_ms
        assert r.mask.shape == seq.frame(i).shape[:2]
        assert set(np.unique(r.mask)) <= {0, 1, 2}


def test_tau_zero_reuses_and_keeps_previous_state(model):
    seq = _frames()
    s = Session.from_model(model, tau=0.0, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    prev = [o.prev_score.copy() for o in s.program.objects]
    r8 = [o.r8.copy() for o in s.program.objects]
    for i in range(1, len(seq)):
        r = s.step(seq.frame(i))
        assert r.reused and "encoder_high" not in r.stage_ms and "decoder_reuse" in r.stage_ms
    # "previous" means the last computed frame: reused frames do not update it
    for o, p, q in zip(s.program.objects, prev, r8):
        np.testing.assert_array_equal(o.prev_score, p)
        np.testing.assert_array_equal(o.r8, q)


def test_max_reuse_forces_a_refresh(model):
    seq = _frames(n=8)
    s = Session.from_model(model, tau=0.0, max_reuse=2, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    pattern = [s.step(seq.frame(i)).reused for i in range(1, len(seq))]
    assert pattern == [True, True, False, True, True, False, True]


def test_target_model_updates_count_the_frames_reused_since_the_last(model, monkeypatch):
    """Each computed frame updates the target models with frames = 1 + the reuses before it, so the
    refit schedule runs on frames, as at tau 1."""
    from edgevos.target_model import TargetModel

    seen = []
    real = TargetModel.update
    monkeypatch.setattr(TargetModel, "update", lambda self, x, y, frames=1, **k: seen.append(frames) or real(self, x, y, frames, **k))
    seq = _frames(n=8)
    s = Session.from_model(model, tau=0.0, max_reuse=2, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    for i in range(1, len(seq)):
        s.step(seq.frame(i))
    objects = len(s.program.objects)
    assert seen == [3] * objects * 2  # frames 3 and 6 computed, each after two reuses


def test_tau_changes_between_frames(model):
    seq = _frames()
    s = Session.from_model(model, tau=0.0, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    assert s.step(seq.frame(1)).reused
    s.tau = 1.0
    assert not s.step(seq.frame(2)).reused
    with pytest.raises(InputError, match="tau"):
        s.tau = 1.5


def test_reference_backend_matches_itself_and_first_frame_is_given_mask(model):
    seq = _frames()
    s = Session.from_model(model, tau=1.0, num_augmentations=0)
    r0 = s.start(seq.frame(0), seq.mask(0))
    np.testing.assert_array_equal(r0.mask, seq.mask(0))
    assert r0.object_ids == [1, 2] and r0.probs.shape == (2,) + seq.frame(0).shape[:2]


def test_add_and_remove_objects(model):
    seq = _frames()
    m0 = seq.mask(0)
    only1 = np.where(m0 == 1, 1, 0).astype(np.uint8)
    s = Session.from_model(model, tau=1.0, num_augmentations=0)
    s.start(seq.frame(0), only1)
    assert s.object_ids == [1]
    r = s.add_object(seq.frame(1), np.where(seq.mask(1) == 2, 2, 0).astype(np.uint8))
    assert s.object_ids == [1, 2] and r.probs.shape[0] == 2
    s.remove_object(1)
    assert s.object_ids == [2]
    with pytest.raises(InputError, match="not tracked"):
        s.remove_object(7)


def test_bad_input_gives_clear_errors(model):
    seq = _frames()
    s = Session.from_model(model, tau=1.0, num_augmentations=0)
    f0 = seq.frame(0)
    with pytest.raises(InputError, match="before start"):
        s.step(f0)
    with pytest.raises(InputError, match="mask is 50x30 but frame is 100x60"):
        s.start(f0, np.ones((30, 50), np.uint8))
    with pytest.raises(InputError, match="empty"):
        s.start(f0, np.zeros(f0.shape[:2], np.uint8))
    with pytest.raises(InputError, match="ids"):
        s.start(f0, np.full(f0.shape[:2], 300, np.int32))
    with pytest.raises(InputError, match="dtype"):
        s.start(f0.astype(np.float32), seq.mask(0))
    with pytest.raises(InputError, match="NaN"):
        s.start(np.full(f0.shape, np.nan, np.float32), seq.mask(0))
    with pytest.raises(InputError, match="shape"):
        s.start(f0[..., :2], seq.mask(0))
    s.start(f0, seq.mask(0))
    with pytest.raises(InputError, match="size cannot change"):
        s.step(np.zeros((64, 64, 3), np.uint8))


def test_vanishing_object_keeps_its_id_and_sequence_goes_on(model):
    """Documented behaviour: an object that leaves the view stays tracked (its mask may be empty)."""
    seq = _frames()
    s = Session.from_model(model, tau=1.0, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    blank = np.zeros_like(seq.frame(1))
    for _ in range(3):
        r = s.step(blank)
    assert r.object_ids == [1, 2]


def test_program_state_is_one_value_that_start_replaces_and_reset_clears(model):
    """Everything a G-FRTM program holds about its video is in ``program.state`` (a GfrtmState
    declared up front, no attribute appears on the way): start() builds the new one aside and
    replaces it in one go (a rejected start leaves the old video), add_objects reads the last
    computed frame from it, and Session.reset() starts from the defaults."""
    from edgevos.programs.gfrtm import GfrtmState

    seq = _frames()
    s = Session.from_model(model, tau=0.0, max_reuse=1, num_augmentations=0, occlusion=True)
    prog = s.program
    declared = set(vars(prog))
    assert prog.state.objects == [] and prog.state.frame_index == -1 and prog.state.last_input is None
    guard = prog.occlusion
    guard.collapse = 0.3  # a setting of the guard: kept by every start
    s.start(seq.frame(0), np.where(seq.mask(0) == 1, 1, 0).astype(np.uint8))
    st = prog.state
    assert isinstance(st, GfrtmState) and prog.objects is st.objects and len(st.objects) == 1
    assert (st.frame_index, st.computed_frames, st.frame_hw) == (0, 1, seq.frame(0).shape[:2])
    assert st.last_input.shape[:2] == (1, 3) and "f16" in st.last_features
    assert st.occlusion is not guard and st.occlusion.collapse == 0.3 and st.occlusion.prev_ids is None
    reused = [s.step(seq.frame(i)).reused for i in range(1, 4)]
    assert True in reused and False in reused
    s.add_object(seq.frame(4), np.where(seq.mask(4) == 2, 2, 0).astype(np.uint8))  # a computed frame
    assert set(vars(prog)) == declared  # nothing appeared lazily
    assert prog.state is st and st.frame_index == 4 and len(st.objects) == 2
    assert st.computed_frames == 1 + reused.count(False) + 1
    bad = seq.mask(0).copy()
    bad[0, 0] = 3  # objects 1 and 2 start, then object 3 vanishes at the feature resolution
    with pytest.raises(InputError, match="vanished"):
        s.start(seq.frame(0), bad)
    assert prog.state is st and st.frame_index == 4  # the rejected start left the video intact
    s.start(seq.frame(0), seq.mask(0))
    assert prog.state is not st and (prog.frame_index, prog.computed_frames, len(prog.objects)) == (0, 1, 2)
    assert not prog.occlusion.area and prog.occlusion.collapse == 0.3
    s.reset()
    assert s.program is not prog and s.program.state.objects == [] and s.program.computed_frames == 0
    assert s.program.occlusion is not None and not s.program.occlusion.area


def test_program_and_session_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None; "
            "import edgevos.programs.gfrtm, edgevos.runtime.session, edgevos.target_model, edgevos.models.registry; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def test_unknown_family_lists_valid_ones():
    with pytest.raises(InputError, match="gfrtm"):
        get_family("nope")


def test_real_davis_sequence_end_to_end(davis_root, mobilenet_weights):
    from edgevos.data import DavisDataset, FirstFrames
    from edgevos.evaluate_model import run_sequence

    m = get_family("gfrtm").build(input_size=(128, 224), backbone_weights=mobilenet_weights)
    seq = FirstFrames(DavisDataset(davis_root)["bear"], 6)
    out = run_sequence(Session.from_model(m, tau=0.7, num_augmentations=1), seq)
    assert len(out["masks"]) == 6 and out["masks"][0].shape == (480, 854)
    assert out["eval"]["object_ids"] == [1]


def test_refiner_stride_16_moves_only_the_upsampling(model):
    """refiner_stride=16 stores and translates the refiner state before the x2 upsampling
    (as Reuse_VOS): the full path is unchanged, the stored state and the translator are 4x smaller."""
    m16 = get_family("gfrtm").build(input_size=SIZE, refiner_stride=16)
    m16.load_state_dict(model.state_dict())
    specs = {s.name: s for s in m16.stage_specs()}
    h, w = SIZE
    assert specs["decoder_full"].outputs[1].shape == (1, model.config.decoder_dim, h // 16, w // 16)
    assert specs["decoder_reuse"].inputs[2].shape == (1, model.config.decoder_dim, h // 16, w // 16)
    feeds = specs["decoder_full"].dummy_feeds(1)
    args = [torch.from_numpy(feeds[n]) for n in specs["decoder_full"].input_names]
    with torch.inference_mode():
        la, r8 = model.decode_full(*args)
        lb, r16 = m16.decode_full(*args)
        assert torch.equal(la, lb)
        up = torch.nn.functional.interpolate(r16, scale_factor=2.0, mode="bilinear", align_corners=False)
        assert torch.allclose(up, r8, atol=1e-6)
    # the step program runs both paths on the stride-16 state
    seq = _frames()
    s = Session.from_model(m16, tau=0.0, num_augmentations=0, max_reuse=2)
    s.start(seq.frame(0), seq.mask(0))
    reused = [s.step(seq.frame(i)).reused for i in range(1, len(seq))]
    assert True in reused and False in reused
    assert s.program.objects[0].r8.shape[-2:] == (h // 16, w // 16)
    with pytest.raises(InputError, match="refiner_stride"):
        get_family("gfrtm").build(input_size=SIZE, refiner_stride=4)


# ---------------------------------------------------------------- v2: per-object gate, live tau, half-resolution reuse
@pytest.fixture(scope="module")
def half_model():
    torch.manual_seed(0)
    return get_family("gfrtm").build(input_size=SIZE, reuse_scale=2, refiner_stride=16)


def _assert_stages_run_on_their_shapes(model):
    mods = model.stage_modules()
    for spec in model.stage_specs():
        feeds = spec.dummy_feeds()
        with torch.inference_mode():
            outs = mods[spec.name](*[torch.from_numpy(feeds[n]) for n in spec.input_names])
        assert [tuple(o.shape) for o in outs] == [t.shape for t in spec.outputs], spec.name


def test_half_resolution_reuse_path_stages_and_a_reused_frame_skips_the_full_encoder(half_model):
    names = [s.name for s in half_model.stage_specs()]
    assert "encoder_reuse" in names
    _assert_stages_run_on_their_shapes(half_model)
    seq = _frames()
    s = Session.from_model(half_model, tau=0.0, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    for i in range(1, len(seq)):
        r = s.step(seq.frame(i))
        assert r.reused and r.mask.shape == seq.frame(i).shape[:2]
        assert "encoder_low" not in r.stage_ms and "encoder_high" not in r.stage_ms
        assert {"encoder_reuse", "gate", "decoder_reuse"} <= set(r.stage_ms)
    s.tau = 1.0
    r = s.step(seq.frame(1))
    assert not r.reused and "encoder_reuse" not in r.stage_ms and "decoder_full" in r.stage_ms


def test_residual_reuse_head_corrects_the_last_computed_logits_at_stride_4():
    torch.manual_seed(0)
    m = get_family("gfrtm").build(input_size=SIZE, reuse_scale=2, refiner_stride=16, reuse_head="residual")
    spec = {s.name: s for s in m.stage_specs()}["decoder_reuse"]
    assert "prev_logits" in spec.input_names and spec.outputs[0].shape[-2:] == (SIZE[0] // 4, SIZE[1] // 4)
    _assert_stages_run_on_their_shapes(m)
    torch.nn.init.zeros_(m.reuse_predict.weight)
    torch.nn.init.zeros_(m.reuse_predict.bias)  # a zero correction: a reused frame repeats the computed one
    seq = _frames()
    s = Session.from_model(m, tau=0.0, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    s.tau = 1.0
    computed = s.step(seq.frame(1))
    assert not computed.reused
    stored = [o.prev_logits.copy() for o in s.program.objects]
    s.tau = 0.0
    s.step(seq.frame(2))  # computes once more (the embedding of frame 1 was never made at tau 1)
    stored = [o.prev_logits.copy() for o in s.program.objects]
    reused = s.step(seq.frame(3))
    assert reused.reused
    np.testing.assert_allclose(reused.model_probs, 1 / (1 + np.exp(-np.concatenate([l[0] for l in stored]))),
                               atol=1e-5)
    with pytest.raises(InputError, match="needs reuse_scale 2"):
        get_family("gfrtm").build(input_size=SIZE, reuse_head="residual")
    blend = get_family("gfrtm").build(input_size=SIZE, reuse_scale=2, refiner_stride=16, reuse_head="blend")
    _assert_stages_run_on_their_shapes(blend)
    with torch.no_grad():  # w -> 1 everywhere: the blend repeats the computed frame
        blend.reuse_predict.weight.zero_()
        blend.reuse_predict.bias.copy_(torch.tensor([0.0, 30.0]))
        spec = {s.name: s for s in blend.stage_specs()}["decoder_reuse"]
        feeds = {k: torch.from_numpy(v) for k, v in spec.dummy_feeds().items()}
        feeds["prev_logits"] = torch.randn(feeds["prev_logits"].shape)
        out = blend.stage_modules()["decoder_reuse"](*[feeds[n] for n in spec.input_names])[0]
    torch.testing.assert_close(out, feeds["prev_logits"], atol=1e-5, rtol=0)


class _GateScript:
    """Wraps a backend: the gate returns scripted probabilities, one per call in order."""

    def __init__(self, backend, values):
        self.backend, self.values, self.feeds = backend, list(values), []

    def __call__(self, stage, feeds, **kw):
        out = self._run(stage, feeds, **kw)
        if stage == "gate":
            self.feeds.append({k: np.array(v, copy=True) for k, v in feeds.items()})
            out = dict(out, p_gate=np.full((1, 1), self.values.pop(0), np.float32))
        return out

    def install(self):
        self._run = self.backend.run
        self.backend.run = self
        return self


def test_gate_decides_per_object(model):
    seq = _frames()
    s = Session.from_model(model, tau=0.5, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    _GateScript(s.program.backend, [0.9, 0.1] * 10).install()
    r = s.step(seq.frame(1))
    assert r.reused_objects == [True, False] and not r.reused
    assert "encoder_high" in r.stage_ms and "decoder_reuse" in r.stage_ms and "decoder_full" in r.stage_ms
    assert [o.reuse_run for o in s.program.objects] == [1, 0]


def test_size_rule_computes_large_objects_whatever_their_gate_says():
    """GfrtmConfig.reuse_max_area (the program's default, live-adjustable): an object whose last computed mask
    covers more than that share of the input is computed even where its gate would reuse it."""
    torch.manual_seed(0)
    m = get_family("gfrtm").build(input_size=SIZE, reuse_max_area=0.5)
    seq = _frames()
    s = Session.from_model(m, tau=0.5, num_augmentations=0)
    prog = s.program
    assert prog.reuse_max_area == 0.5  # the weights' own
    s.start(seq.frame(0), seq.mask(0))
    _GateScript(prog.backend, [0.9] * 20).install()

    def step_with_areas(i, areas):  # each object's last computed mask covering ``areas`` of the input
        for o, a in zip(prog.objects, areas):
            flat = np.full(o.prev_logits.size, -1.0, np.float32)
            flat[:int(round(a * flat.size))] = 1.0
            o.prev_logits = flat.reshape(o.prev_logits.shape)
        return s.step(seq.frame(i))

    prog.reuse_max_area = 0.3
    assert step_with_areas(1, [0.1, 0.6]).reused_objects == [True, False]
    assert step_with_areas(2, [0.6, 0.1]).reused_objects == [False, True]
    prog.reuse_max_area = 1.0  # no rule: the gate decides alone
    assert step_with_areas(3, [0.6, 0.6]).reused_objects == [True, True]
    assert Session.from_model(m, tau=0.5, reuse_max_area=0.2).program.reuse_max_area == 0.2  # the caller's wins
    for bad in (0.0, 1.5):
        with pytest.raises(InputError, match="reuse_max_area"):
            prog.reuse_max_area = bad
        with pytest.raises(InputError, match="reuse_max_area"):
            get_family("gfrtm").build(input_size=SIZE, reuse_max_area=bad)


def test_shipped_weights_carry_the_size_rule_and_eval_can_override_it():
    from edgevos.evaluate_model import session_factory

    assert session_factory("gfrtm", "default")(0.85).program.reuse_max_area == 0.12
    make = session_factory("gfrtm", "default", program_options={"reuse_max_area": 0.2})
    assert make(0.85).program.reuse_max_area == 0.2


def test_live_tau_change_never_gates_against_a_stale_embedding(model):
    seq = _frames(n=6)
    s = Session.from_model(model, tau=1.0, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    for i in (1, 2):
        s.step(seq.frame(i))  # tau 1: no gate, so no embedding of frames 1-2
    s.tau = 0.0
    script = _GateScript(s.program.backend, [1.0] * 20).install()
    assert not s.step(seq.frame(3)).reused  # the embeddings are from frame 0: compute, refresh them
    r = s.step(seq.frame(4))
    assert r.reused
    # frame 4's gate (calls 2, 3) compared against frame 3's embedding (the last computed frame),
    # which replaced frame 0's (fed to frame 3's gate, calls 0, 1)
    np.testing.assert_array_equal(script.feeds[2]["prev_embed"], s.program.objects[0].prev_embed)
    assert not np.array_equal(script.feeds[0]["prev_embed"], script.feeds[2]["prev_embed"])


def test_multi_object_target_models_learn_from_the_merged_mask(model, monkeypatch):
    from edgevos.programs.base import merged_posteriors, resize_maps
    from edgevos.target_model import TargetModel

    seq = _frames()
    s = Session.from_model(model, tau=1.0, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    seen, others = [], []
    monkeypatch.setattr(TargetModel, "update", lambda self, f, label, frames=1, others=None:
                        seen.append(label) or others_seen.append(others) or False)
    others_seen = others
    r = s.step(seq.frame(1))
    want = merged_posteriors(resize_maps(r.model_probs, s.program._h16w16))
    assert len(seen) == 2
    for k, (got, w) in enumerate(zip(seen, want)):
        np.testing.assert_allclose(got, w, atol=1e-6)
        # the other objects' shares are this object's weighted negatives
        np.testing.assert_allclose(others[k], want.sum(0) - w, atol=1e-6)


def test_first_frame_fit_weighs_the_other_objects_as_negatives(model, monkeypatch):
    from edgevos.programs.base import resize_map
    from edgevos.target_model import TargetModel

    seq = _frames()
    calls = []
    init = TargetModel.initialize
    monkeypatch.setattr(TargetModel, "initialize", lambda self, *a, **k: calls.append(k.get("others"))
                        or init(self, *a, **k))
    s = Session.from_model(model, tau=1.0, num_augmentations=0)
    m0 = seq.mask(0)
    s.start(seq.frame(0), m0)
    ids = s.program.object_ids
    assert len(calls) == len(ids) == 2
    import cv2

    h, w = s.program.input_size
    m_in = cv2.resize(m0, (w, h), interpolation=cv2.INTER_NEAREST)
    for k, obj in enumerate(ids):
        other = ((m_in != obj) & (m_in > 0)).astype(np.float32)
        np.testing.assert_allclose(calls[k], resize_map(other, s.program._h16w16, area=True), atol=1e-6)
    # with first-frame augmentations each augmented sample carries the others moved with it
    aug = []
    monkeypatch.setattr(TargetModel, "initialize", lambda self, *a, **k: aug.append(k.get("aug_others"))
                        or init(self, *a, **k))
    s = Session.from_model(model, tau=1.0, num_augmentations=2)
    s.start(seq.frame(0), m0)
    assert len(aug) == 2 and all(len(a) == 2 for a in aug)
    flipped = ((m_in[:, ::-1] != ids[0]) & (m_in[:, ::-1] > 0)).astype(np.float32)  # augmentation 1: the flip
    np.testing.assert_allclose(aug[0][0], resize_map(flipped, s.program._h16w16, area=True), atol=1e-6)


def test_merge_is_frtms_log_odds_argmax_and_shares_follow_it():
    from edgevos.programs.base import merged_posteriors, soft_aggregate

    rng = np.random.default_rng(0)
    for k in (2, 3, 4):
        p = rng.random((k, 17, 23)).astype(np.float32)
        eps = 1e-7
        q = np.clip(p, eps, 1 - eps)
        allp = np.concatenate([np.clip((1 - q).min(0, keepdims=True), eps, 1 - eps), q], 0)
        ids = list(range(3, 3 + k))
        want = np.array([0] + ids, np.uint8)[np.log(allp / (1 - allp)).argmax(0)]
        np.testing.assert_array_equal(soft_aggregate(p, ids), want)
    # a pixel where object 2 bleeds under a more confident object 1: its share drops below 0.5
    p = np.array([[[0.9]], [[0.8]]], np.float32)
    share = merged_posteriors(p)
    assert share[1, 0, 0] < 0.5 < share[0, 0, 0] and share.sum() <= 1.0
    np.testing.assert_allclose(merged_posteriors(p[:1]), p[:1])


def test_probabilities_come_at_the_frame_size_on_demand(model):
    seq = _frames()
    s = Session.from_model(model, tau=1.0, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    r = s.step(seq.frame(1))
    assert r.model_probs.shape[1:] != r.mask.shape
    assert r.probs.shape == (2,) + r.mask.shape


def test_target_model_reads_the_configured_encoder_outputs():
    """``target_inputs`` stacks f32 (upsampled) and f8 (pooled) onto f16 for the target model."""
    torch.manual_seed(0)
    m = get_family("gfrtm").build(input_size=SIZE, target_inputs=["f16", "f32", "f8"])
    s = Session.from_model(m, tau=1.0, num_augmentations=0)
    seq = _frames()
    s.start(seq.frame(0), seq.mask(0))
    prog = s.program
    assert prog.target_inputs == ("f16", "f32", "f8")
    spec_hi, spec_lo = prog.backend.spec("encoder_high"), prog.backend.spec("encoder_low")
    want = spec_hi.outputs[0].shape[1] + spec_hi.outputs[1].shape[1] + spec_lo.outputs[1].shape[1]
    assert prog.c_target == want
    r = s.step(seq.frame(1))
    assert r.mask.shape == seq.frame(1).shape[:2]
    for o in prog.objects:
        assert o.target.in_channels == want
    with pytest.raises(InputError, match="target_inputs"):
        get_family("gfrtm").build(input_size=SIZE, target_inputs=["f32"])


def test_image_guided_reuse_refine_reads_the_half_image_and_starts_as_the_plain_head(tmp_path):
    """reuse_refine: decoder_reuse takes ``image_half`` (what encoder_reuse read) and corrects the
    stride-4 logits from it; at zero init it equals the head without it; the program feeds the image;
    the stage exports to ONNX with FP32 parity."""
    pytest.importorskip("onnx")
    from edgevos.export.onnx_export import export_stages

    torch.manual_seed(0)
    kw = dict(input_size=SIZE, reuse_scale=2, refiner_stride=16, reuse_head="blend")
    m = get_family("gfrtm").build(reuse_refine=8, **kw)
    plain = get_family("gfrtm").build(**kw)
    plain.load_state_dict(m.state_dict(), strict=False)
    spec = {s.name: s for s in m.stage_specs()}["decoder_reuse"]
    assert spec.input_names[-1] == "image_half"
    assert spec.inputs[-1].shape == {s.name: s for s in m.stage_specs()}["encoder_reuse"].inputs[0].shape
    _assert_stages_run_on_their_shapes(m)
    feeds = {k: torch.from_numpy(v) for k, v in spec.dummy_feeds().items()}
    feeds["image_half"] = torch.rand(feeds["image_half"].shape) * 255
    with torch.no_grad():
        a = m.stage_modules()["decoder_reuse"](*[feeds[n] for n in spec.input_names])[0]
        b = plain.stage_modules()["decoder_reuse"](*[feeds[n] for n in spec.input_names[:-1]])[0]
        torch.testing.assert_close(a, b)
        m.reuse_refine.out.bias.fill_(1.0)
        m.reuse_refine.out.weight.normal_(0, 0.1)
        c = m.stage_modules()["decoder_reuse"](*[feeds[n] for n in spec.input_names])[0]
        feeds["image_half"] = torch.rand(feeds["image_half"].shape) * 255
        d = m.stage_modules()["decoder_reuse"](*[feeds[n] for n in spec.input_names])[0]
    assert not torch.allclose(a, c) and not torch.allclose(c, d)  # the image steers the correction
    seq = _frames()
    s = Session.from_model(m, tau=0.0, max_reuse=2, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    seen = []
    run = s.program.backend.run
    s.program.backend.run = lambda stage, f, *x, **k: (seen.append((stage, set(f))), run(stage, f, *x, **k))[1]
    assert s.step(seq.frame(1)).reused
    assert any(st == "decoder_reuse" and "image_half" in names for st, names in seen)
    report = {}
    mods = m.stage_modules()
    export_stages({"decoder_reuse": mods["decoder_reuse"]}, [spec], tmp_path, report=report)
    assert report["decoder_reuse"]["max_abs_diff"] <= report["decoder_reuse"]["bound"]
    with pytest.raises(InputError, match="reuse_refine"):
        get_family("gfrtm").build(input_size=SIZE, reuse_scale=2, refiner_stride=16, reuse_refine=8)


def test_computed_embed_f8_skips_encoder_reuse_and_gate_on_frames_that_must_compute(tmp_path):
    """computed_embed='f8': a computed frame's gate embedding comes from its own f8 (stage
    ``gate_embed``), so with max reuse 1 the frame after a reuse runs neither ``encoder_reuse`` nor the
    gate; the next gate compares with that embedding; the stage exports with FP32 parity.  An 'h8'
    model (today's) still runs both on such a frame."""
    pytest.importorskip("onnx")
    from edgevos.export.onnx_export import export_stages

    torch.manual_seed(0)
    kw = dict(input_size=SIZE, reuse_scale=2, refiner_stride=16, reuse_head="blend")
    m = get_family("gfrtm").build(computed_embed="f8", **kw)
    spec = {s.name: s for s in m.stage_specs()}
    assert spec["gate_embed"].outputs[0].shape == spec["gate"].outputs[2].shape  # the embedding the gate compares
    _assert_stages_run_on_their_shapes(m)
    seq = _frames(8)
    for model, skips in ((m, True), (get_family("gfrtm").build(**kw), False)):
        s = Session.from_model(model, tau=0.0, max_reuse=1, num_augmentations=0)
        s.start(seq.frame(0), seq.mask(0))
        seen, feeds_seen = [], []
        run = s.program.backend.run

        def spy(stage, f, *x, **k):
            seen.append(stage)
            feeds_seen.append((stage, f))
            return run(stage, f, *x, **k)

        s.program.backend.run = spy
        for i in range(1, 7):
            seen.clear()
            r = s.step(seq.frame(i))
            assert r.reused == (i % 2 == 1)  # tau 0: reuse whenever allowed, max one in a row
            if not r.reused:
                assert ("encoder_reuse" not in seen and "gate" not in seen) == skips
                assert ("gate_embed" in seen) == skips
        if skips:
            # the gate of a reused frame compares with the last computed frame's gate_embed output
            s.program.backend.run = run
            computed = s.program.state.last_features["f8"]
            with torch.no_grad():
                want = m.embed_computed(torch.from_numpy(computed)).numpy()
            np.testing.assert_allclose(s.program.objects[0].prev_embed, want, rtol=1e-5, atol=1e-5)
    report = {}
    export_stages({"gate_embed": m.stage_modules()["gate_embed"]}, [spec["gate_embed"]], tmp_path, report=report)
    assert report["gate_embed"]["max_abs_diff"] <= report["gate_embed"]["bound"]
    with pytest.raises(InputError, match="computed_embed"):
        get_family("gfrtm").build(input_size=SIZE, computed_embed="f8")  # the paper's reuse path has no h8
    with pytest.raises(InputError, match="computed_embed"):
        get_family("gfrtm").build(computed_embed="f4", **kw)


def test_the_weights_trained_gap_caps_reuse_runs_unless_the_caller_sets_one():
    """GfrtmConfig.gate_max_gap (phase 2's --max-gap) is the program's default max_reuse: a gate trained on
    one-frame gaps never judges a longer one; an explicit max_reuse wins; 0 (not recorded) caps nothing."""
    torch.manual_seed(0)
    kw = dict(input_size=SIZE, reuse_scale=2, refiner_stride=16, reuse_head="blend")
    seq = _frames(8)

    def runs(model, **session_kw):
        s = Session.from_model(model, tau=0.0, num_augmentations=0, **session_kw)
        s.start(seq.frame(0), seq.mask(0))
        return [s.step(seq.frame(i)).reused for i in range(1, 8)]

    capped = get_family("gfrtm").build(gate_max_gap=1, **kw)
    assert runs(capped) == [True, False] * 3 + [True]
    assert runs(capped, max_reuse=3) == [True, True, True, False, True, True, True]
    assert all(runs(get_family("gfrtm").build(**kw)))  # not recorded: no cap
    with pytest.raises(InputError, match="gate_max_gap"):
        get_family("gfrtm").build(gate_max_gap=-1, **kw)


def test_warp_reuse_head_moves_the_computed_logits_by_its_motion_field(tmp_path):
    """reuse_head 'warp' is 'blend' with the computed frame's logits moved by a learned stride-8 motion
    field: a zero field (its start) gives the blend head's output; a field of one cell to the right
    samples the logits two stride-4 pixels to the right; the stage exports with FP32 parity (GridSample)."""
    pytest.importorskip("onnx")
    from edgevos.export.onnx_export import export_stages

    torch.manual_seed(0)
    kw = dict(input_size=SIZE, reuse_scale=2, refiner_stride=16)
    warp = get_family("gfrtm").build(reuse_head="warp", **kw)
    blend = get_family("gfrtm").build(reuse_head="blend", **kw)
    _assert_stages_run_on_their_shapes(warp)
    assert warp.reads_prev_logits
    missing = blend.load_state_dict(warp.state_dict(), strict=False).unexpected_keys
    assert missing and all(k.startswith("reuse_warp.") for k in missing)
    spec = {s.name: s for s in warp.stage_specs()}["decoder_reuse"]
    feeds = {k: torch.from_numpy(v) for k, v in spec.dummy_feeds().items()}
    feeds = {k: torch.randn(v.shape) for k, v in feeds.items()}
    args = [feeds[n] for n in spec.input_names]
    with torch.no_grad():
        out_warp = warp.stage_modules()["decoder_reuse"](*args)[0]
        out_blend = blend.stage_modules()["decoder_reuse"](*args[:5])[0]  # without the embeddings
        torch.testing.assert_close(out_warp, out_blend, atol=1e-4, rtol=0)
        warp.reuse_warp.out.bias.copy_(torch.tensor([1.0, 0.0]))  # one stride-8 cell to the right
        prev = feeds["prev_logits"]
        h, w = prev.shape[-2] // 2, prev.shape[-1] // 2
        moved = warp.reuse_warp(torch.zeros(1, warp.config.shallow_dim, h, w), prev, feeds["embed"], feeds["prev_embed"])
        cost = warp.reuse_warp.correlation(feeds["embed"], feeds["embed"])  # a frame against itself
    assert cost.shape[1] == 49 and torch.allclose(cost[:, 24], torch.ones_like(cost[:, 24]), atol=1e-5)
    assert float(cost.max()) <= 1 + 1e-5 and "embed" in spec.input_names and "prev_embed" in spec.input_names
    torch.testing.assert_close(moved[..., :-2], prev[..., 2:], atol=1e-4, rtol=0)
    torch.testing.assert_close(moved[..., -2:], prev[..., -1:].expand_as(moved[..., -2:]), atol=1e-4, rtol=0)  # border
    report = {}
    export_stages({"decoder_reuse": warp.stage_modules()["decoder_reuse"]}, [spec], tmp_path, report=report)
    assert report["decoder_reuse"]["max_abs_diff"] <= report["decoder_reuse"]["bound"]
    import onnx

    from edgevos.export.quantize import excluded_nodes

    graph = onnx.load(str(tmp_path / "decoder_reuse.onnx"))
    kept = {n: why for n, why in excluded_nodes(graph, "int8-cpu").items() if "correlation" in why}
    assert len(kept) >= 3 * 49 and all("/correlate/" in n for n in kept)  # a slice, product, sum per displacement
    assert not any("/reuse_level/" in n for n in kept)
    near = get_family("gfrtm").build(reuse_head="warp", warp_radius=2, **kw)  # a shorter reach: 25 displacements
    _assert_stages_run_on_their_shapes(near)
    assert near.reuse_warp.correlation(feeds["embed"], feeds["embed"]).shape[1] == 25
    with pytest.raises(InputError, match="warp_radius 0"):
        get_family("gfrtm").build(reuse_head="warp", warp_radius=0, **kw)
    seq = _frames()  # a stream reuses through it
    s = Session.from_model(warp, tau=0.0, max_reuse=1, num_augmentations=0)
    s.start(seq.frame(0), seq.mask(0))
    assert [s.step(seq.frame(i)).reused for i in (1, 2)] == [True, False]
