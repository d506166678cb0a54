"""SlowFast-VOS: presets, streaming == clip mode, Conv2d-sum == Conv3d, inflation, program, training, export, bad input."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgevos.errors import InputError  # noqa: E402
from edgevos.models.registry import get_family  # noqa: E402
from edgevos.programs.base import to_input  # noqa: E402
from edgevos.runtime.session import Session  # noqa: E402

SIZE = (64, 96)
PRESETS = ["1-1", "3-3", "7-7", "1-7", "3-7"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _build(preset="3-7", **kw):
    torch.manual_seed(0)
    m = get_family("slowfast").build(input_size=kw.pop("input_size", SIZE), preset=preset, **kw)
    # non-trivial BatchNorm statistics, so equalities are not between near-zero tensors
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.running_mean.shape, generator=g) * 0.4 - 0.2)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
    return m


def _seq(n=8, h=60, w=100, objects=2, seed=0):
    from edgevos.data import SyntheticConfig, make_sequence

    return make_sequence(SyntheticConfig(height=h, width=w, num_frames=n, num_objects=objects, seed=seed))


def _stream_vs_clip(model, seq, n):
    """Max |diff| of the program's streamed features (numpy rings) vs clip mode, over frames 1..n-1."""
    s = Session.from_model(model, family="slowfast")
    s.start(seq.frame(0), seq.mask(0))
    frames = [torch.from_numpy(to_input(seq.frame(i), SIZE)[0]) for i in range(n)]
    worst, scale = 0.0, 0.0
    for t in range(1, n):
        s.step(seq.frame(t))
        slow, fast = s.program.state.last
        with torch.no_grad():
            clip = model.clip(torch.stack(frames[:t + 1]))
        for k, v in list(slow.items())[:4] + [("fast32", fast["fast32"])]:
            worst = max(worst, float(np.abs(clip[k].numpy() - v).max()))
            scale = max(scale, float(np.abs(v).max()))
    return worst, scale


@pytest.mark.parametrize("preset", ["3-7", "7-7"])
def test_streaming_equals_clip_mode(preset):
    m = _build(preset)
    assert m.receptive_field == 17
    worst, scale = _stream_vs_clip(m, _seq(n=9), 9)
    assert scale > 0.05 and worst < 1e-4 * max(1.0, scale)


def test_conv2d_sum_form_equals_conv3d():
    seq = _seq(n=5)
    m = _build("7-7")
    frames = torch.stack([torch.from_numpy(to_input(seq.frame(i), SIZE)[0]) for i in range(5)])
    with torch.no_grad():
        a = m.clip(frames)
        m.set_conv3d_as_conv2d(True)
        assert m.config.conv3d_as_conv2d
        b = m.clip(frames)
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-5, rtol=1e-4)
    # and in streaming: the step program on the Conv2d-sum stages equals clip mode
    worst, scale = _stream_vs_clip(m, seq, 5)
    assert worst < 1e-4 * max(1.0, scale)
    # the exported form has no Conv3d at all
    with torch.no_grad():
        graph = torch.jit.trace(m.stage_modules()["slow_body"],
                                tuple(torch.from_numpy(v) for v in m.stage_specs()[3].dummy_feeds().values()),
                                check_trace=False).inlined_graph
    assert "conv3d" not in str(graph) and "aten::_convolution" in str(graph)


@pytest.mark.parametrize("form", ["partial", "stacked"])
@pytest.mark.parametrize("mode", ["step", "init"])
def test_streamed_temporal_conv_forms_equal_the_conv3d(form, mode):
    from edgevos.models.slowfast_layers import StepContext, TemporalConv

    torch.manual_seed(0)
    for cin, cout, kt, k, stride in [(3, 4, 5, 3, 2), (4, 24, 3, 1, 1), (6, 5, 3, 3, 2)]:
        conv = TemporalConv(cin, cout, kt, k, stride, bias=True, key="x")
        x, hist = torch.randn(1, cin, 16, 20), torch.randn(kt - 1, cin, 16, 20)
        with torch.no_grad():
            conv.ctx = StepContext(mode, {"x": hist})
            ref = conv(x)
            setattr(conv, form, True)
            if form == "partial":  # its ring holds each past frame's partial products, not the frame
                items = []
                for i in range(kt - 1):
                    conv.ctx = StepContext("init")
                    conv(hist[i:i + 1])
                    items.append(conv.ctx.new["x"])
                hist = torch.cat(items, 0)
            conv.ctx = StepContext(mode, {"x": hist})
            out = conv(x)
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5)
        if form == "partial":
            assert conv.ctx.new["x"].shape == (1, (kt - 1) * cout, x.shape[2] // stride, x.shape[3] // stride)
    depthwise = TemporalConv(4, 4, 3, 3, 2, groups=4, key="x")
    depthwise.partial = True
    depthwise.ctx = StepContext("init")
    with pytest.raises(ValueError, match="groups"):
        depthwise(torch.randn(1, 4, 8, 8))


def test_a_reused_frame_runs_no_slow_stem_and_the_fast_stem_meets_each_frame_once():
    m = _build("3-7")
    specs = {s.name: s for s in m.stage_specs()}
    assert specs["frame_stem"].output_names == ["fast_in"]
    assert specs["slow_body"].input_names[0] == "image"
    mods = m.stage_modules()
    with torch.no_grad():
        graphs = {n: str(torch.jit.trace(mods[n], tuple(torch.from_numpy(v) for v in specs[n].dummy_feeds().values()),
                                         check_trace=False).inlined_graph)
              for n in ("frame_stem", "fast_body", "slow_body")}
    assert "aten::_convolution" not in graphs["frame_stem"]  # the slow stem moved into slow_body
    for n in ("fast_body", "slow_body"):  # every temporal layer streams as one Conv2d (INT8 quantizes it)
        assert "conv3d" not in graphs[n] and "aten::_convolution" in graphs[n]
    stem = next(c for c in m.temporal_convs if c.partial)  # the fast conv1: k_t 5, stride 2
    assert stem.k_t == 5 and stem.stride == 2
    lay = m.ring_layout()[stem.key]
    assert lay[0] == stem.k_t - 1 and lay[2] == ((stem.k_t - 1) * stem.weight.shape[0], SIZE[0] // 2, SIZE[1] // 2)
    assert "new_" + stem.key in specs["fast_body"].output_names
    # a reused frame: no slow stage, and the program still equals clip mode (test_streaming_equals_clip_mode)
    seq = _seq(n=4)
    s = Session.from_model(m, family="slowfast", tau=0.0, max_reuse=2)
    s.start(seq.frame(0), seq.mask(0))
    r = s.step(seq.frame(1))
    assert r.reused and not any(k.startswith("slow") for k in r.stage_ms)


def test_slow_pathway_inflated_from_2d_equals_2d_network_per_frame():
    """Current-frame-tap inflation + zero weights for lateral channels: slow == the 2D backbone, frame by frame."""
    from edgevos.models.backbones import build_backbone
    from edgevos.models.slowfast import apply_freeze, inflate_from_2d

    for backbone in ("mobilenetv2", "resnet18"):
        m = _build("7-7", backbone=backbone)
        torch.manual_seed(3)
        ref = build_backbone(backbone).eval()
        g = torch.Generator().manual_seed(2)
        for mod in ref.modules():  # non-trivial BN statistics
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.rand(mod.running_mean.shape, generator=g) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
        exact = inflate_from_2d(m, ref.state_dict())
        assert exact and any(k.endswith("running_mean") for k in exact)
        frames = torch.rand(6, 3, *SIZE) * 255
        with torch.no_grad():
            clip = m.clip(frames)
            x = (frames[-1:] - m.mean) / m.std
            f4, f8 = ref.forward_low(x)
            f16, f32 = ref.forward_high(f8)
        cs = m.slow.channels
        for k, r in (("f4", f4), ("f8", f8), ("f16", f16), ("f32", f32)):
            slow_part = clip[k][:, :r.shape[1]]  # lateral channels follow the slow ones
            torch.testing.assert_close(slow_part, r, atol=1e-4, rtol=1e-4)
        # freezing "backbone" freezes exactly the 2D copies; temporal convs stay trainable
        apply_freeze(m, "backbone")
        temporal = [n for n, p in m.named_parameters() if p.dim() == 5 and p.shape[2] > 1 and n.startswith("slow.")]
        assert temporal and all(dict(m.named_parameters())[n].requires_grad for n in temporal)
        assert not m.slow.stem(torch.zeros(1, 3, 32, 32)).requires_grad


def test_mobilenet_imagenet_weights_load_into_the_slow_pathway(mobilenet_weights):
    from edgevos.models.backbones import MobileNetV2, load_torchvision_weights

    m = get_family("slowfast").build(input_size=SIZE, preset="3-7", backbone_weights=mobilenet_weights)
    ref = MobileNetV2().eval()
    load_torchvision_weights(ref, mobilenet_weights)
    img = torch.rand(1, 3, *SIZE) * 255
    with torch.no_grad():
        f4, _ = ref.forward_low((img - m.mean) / m.std)
        c = m.clip(img)
    torch.testing.assert_close(c["f4"][:, :24], f4, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_and_trains_a_few_steps(preset, tmp_path):
    from edgevos.train.slowfast import TrainConfig, Trainer

    cfg = TrainConfig(out=str(tmp_path), synthetic=2, synthetic_frames=6, input_size=SIZE, preset=preset,
                      steps=2, batch=1, clip_len=2, checkpoint_every=1)
    tr = Trainer(cfg)
    before = {k: v.clone() for k, v in tr.model.trainable_state_dict().items()}
    path = tr.run()
    after = tr.model.trainable_state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    assert (tmp_path / "checkpoint.pt").is_file()
    m2 = get_family("slowfast").build(weights=path, input_size=SIZE)
    assert m2.config.preset == preset
    if preset == "3-7":  # resume: a finished run does no further steps and gives the same weights
        tr2 = Trainer(TrainConfig(**{**cfg.__dict__}))
        tr2.run()
        for k, v in tr2.model.trainable_state_dict().items():
            torch.testing.assert_close(v, after[k])


def test_gate_reuses_slow_features_and_tau_one_never_gates():
    seq = _seq(n=6)
    m = _build("3-7")
    s = Session.from_model(m, family="slowfast", tau=1.0)
    s.start(seq.frame(0), seq.mask(0))
    for i in range(1, 4):
        r = s.step(seq.frame(i))
        assert not r.reused and r.p_gate is None and "slow_body" in r.stage_ms and "gate" not in r.stage_ms
    s = Session.from_model(m, family="slowfast", tau=0.0, max_reuse=2)
    s.start(seq.frame(0), seq.mask(0))
    prog = s.program
    ring = prog.rings[next(k for k in prog.rings if k.startswith("slow_"))]
    pattern = []
    for i in range(1, 6):
        latest = np.array(ring.latest)
        forced = prog.reuse_run == 2  # max_reuse reused frames in a row: this one is computed, ungated
        r = s.step(seq.frame(i))
        pattern.append(r.reused)
        if forced:
            assert not r.reused and r.p_gate is None and "gate" not in r.stage_ms
        else:
            assert r.p_gate is not None and 0.0 <= r.p_gate <= 1.0 and "gate" in r.stage_ms
        if r.reused:
            assert "slow_body" not in r.stage_ms and "decoder_reuse" in r.stage_ms
            np.testing.assert_array_equal(ring.latest, latest)  # slow ring advanced with the previous item
        assert set(np.unique(r.mask)) <= {0, 1, 2}
    assert pattern == [True, True, False, True, True]
    assert prog.slow_runs == 2  # first frame + one computed frame


def test_program_state_is_one_value_that_reset_clears():
    """Everything a SlowFast program holds about its video is in ``program.state`` (a dataclass
    declared up front, no attribute appears on the way); start() replaces it and
    Session.reset() starts from the defaults, with empty rings."""
    from edgevos.programs.slowfast import SlowFastState

    seq = _seq(n=6)
    s = Session.from_model(_build("3-7"), family="slowfast", tau=0.0, max_reuse=2)
    prog = s.program
    declared = set(vars(prog))
    assert prog.state == SlowFastState()
    s.start(seq.frame(0), seq.mask(0))
    for i in range(1, 5):
        s.step(seq.frame(i))
    assert set(vars(prog)) == declared  # nothing appeared lazily
    st = prog.state
    assert (st.frame_index, st.steps, st.slow_runs) == (4, 4, prog.slow_runs) and len(st.objects) == 2
    assert st.fast8_prev is not None and st.last is not None and prog.objects is st.objects
    s.start(seq.frame(0), seq.mask(0))
    assert prog.state is not st and (prog.state.frame_index, prog.state.steps, prog.reuse_run) == (0, 0, 0)
    s.reset()
    assert s.program.state == SlowFastState() and s.program is not prog
    assert all(r.pushes == 0 for r in s.program.rings.values())
    assert s.tau == 0.0 and s.max_reuse == 2


def test_unsupervised_mode_needs_no_mask():
    seq = _seq(n=4, objects=1)
    m = _build("1-7", mode="unsupervised")
    assert "reference" not in m.stage_modules()
    s = Session.from_model(m, family="slowfast")
    r0 = s.start(seq.frame(0), None)
    assert r0.object_ids == [1] and r0.mask.shape == seq.frame(0).shape[:2]
    r = s.step(seq.frame(1))
    assert r.probs.shape == (1,) + seq.frame(1).shape[:2]
    with pytest.raises(InputError, match="unsupervised"):
        s.start(seq.frame(0), seq.mask(0))


def test_add_and_remove_objects():
    seq = _seq(n=4)
    m = _build("3-3")
    s = Session.from_model(m, family="slowfast")
    s.start(seq.frame(0), np.where(seq.mask(0) == 1, 1, 0).astype(np.uint8))
    r = s.add_object(seq.frame(1), np.where(seq.mask(1) == 2, 2, 0).astype(np.uint8))
    assert s.object_ids == [1, 2] and r.probs.shape[0] == 2
    s.remove_object(1)
    assert s.object_ids == [2]


def test_bad_input_gives_clear_errors():
    with pytest.raises(InputError, match=r"'2-9'.*1-1.*3-3.*7-7.*1-7.*3-7"):
        get_family("slowfast").build(input_size=SIZE, preset="2-9")
    with pytest.raises(InputError, match="unknown SlowFast option"):
        get_family("slowfast").build(input_size=SIZE, presets="3-7")
    seq = _seq(n=3)
    s = Session.from_model(_build("1-1"), family="slowfast")
    f0 = seq.frame(0)
    with pytest.raises(InputError, match="before start"):
        s.step(f0)
    with pytest.raises(InputError, match="mask is 50x30 but frame is 100x60"):
        s.start(f0, np.ones((30, 50), np.uint8))
    with pytest.raises(InputError, match="needs the first frame's mask"):
        s.start(f0, None)
    s.start(f0, seq.mask(0))
    with pytest.raises(InputError, match="size cannot change"):
        s.step(np.zeros((64, 64, 3), np.uint8))


def test_unknown_preset_in_train_cli_lists_the_valid_ones(capsys, tmp_path):
    from edgevos.cli import main

    assert main(["train", "slowfast", "--preset", "5-5", "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err
    assert "'5-5'" in err and "3-7" in err and "1-1" in err
    assert not (tmp_path / "x").exists()


def test_program_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; "
            "import edgevos.programs.slowfast, edgevos.models.registry; "
            "print(edgevos.programs.slowfast.check_preset('3-7'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "(3, 7, 3)" in out.stdout


def _export(preset, tmp_path, **kw):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxslim")
    from edgevos.export.onnx_export import export_stages

    m = _build(preset, input_size=(64, 64), **kw)
    report = {}
    paths = export_stages(m.stage_modules(), m.stage_specs(), tmp_path, report=report)
    assert set(paths) == {s.name for s in m.stage_specs()}
    assert all(r["max_abs_diff"] <= r["bound"] for r in report.values())
    return paths


def test_stages_export_with_fp32_parity_conv2d_form(tmp_path):
    import onnx

    paths = _export("3-7", tmp_path, conv3d_as_conv2d=True)
    ops = {n.op_type for p in paths.values() for n in onnx.load(str(p)).graph.node}
    assert "Conv" in ops
    # Conv2d-sum form: every Conv is 2D (4-D weights)
    for p in paths.values():
        g = onnx.load(str(p)).graph
        dims = {i.name: len(i.dims) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Conv" and n.input[1] in dims:
                assert dims[n.input[1]] == 4, (p.name, n.name)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("as2d", [False, True])
def test_every_preset_exports(preset, as2d, tmp_path):
    _export(preset, tmp_path, conv3d_as_conv2d=as2d)


def test_real_davis_sequence_streams_through_a_session(davis_root):
    from edgevos.data import DavisDataset, FirstFrames
    from edgevos.evaluate_model import run_sequence

    m = get_family("slowfast").build(input_size=(128, 224), preset="3-7")
    out = run_sequence(Session.from_model(m, family="slowfast", tau=0.5), FirstFrames(DavisDataset(davis_root)["bear"], 5))
    assert len(out["masks"]) == 5 and out["masks"][0].shape == (480, 854)
    assert out["eval"]["object_ids"] == [1]


def test_new_layers_normalise_and_train(tmp_path, mobilenet_weights):
    """Layers without pretrained statistics (fast pathway, laterals) train their BatchNorm: after a few
    steps every such layer has moved off the default statistics and the fast/lateral maps are not constant."""
    from edgevos.train.slowfast import TrainConfig, Trainer

    cfg = TrainConfig(out=str(tmp_path), synthetic=2, synthetic_frames=8, input_size=SIZE, preset="3-7",
                      steps=3, batch=1, clip_len=2, checkpoint_every=100, backbone_weights=str(mobilenet_weights))
    tr = Trainer(cfg)
    tr.run()
    m = tr.model
    new_bn = [(n, mod) for n, mod in m.named_modules() if isinstance(mod, torch.nn.BatchNorm2d)
              and n.split(".")[0] in ("fast", "laterals")]
    assert new_bn
    for n, bn in new_bn:
        moved = (bn.running_mean.abs().max() > 1e-6) or ((bn.running_var - 1).abs().max() > 1e-6)
        assert moved, f"{n} still has the default statistics"
    # pretrained (frozen) BatchNorm keeps eval mode in train()
    m.train()
    frozen = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)
              and not any(p.requires_grad for p in mod.parameters())]
    assert frozen and all(not mod.training for mod in frozen)
    assert all(mod.training for _, mod in new_bn)
    m.eval()
    seq = _seq(n=8)
    acts = {}
    hooks = [mod.register_forward_hook(lambda mod, i, o, n=n: acts.setdefault(n, o.detach()))
             for n, mod in m.named_modules() if n.startswith("laterals.") and n.count(".") == 1]
    s = Session.from_model(m, family="slowfast", tau=1.0)
    s.start(seq.frame(0), seq.mask(0))
    for i in range(1, 4):
        s.step(seq.frame(i))
    for h in hooks:
        h.remove()
    assert acts and all(float(a.float().var()) > 0 for a in acts.values()), {n: float(a.float().var()) for n, a in acts.items()}


def test_target_model_score_conditions_the_decoder_and_updates_online():
    """target_model=True: the decoder reads a host target model's stride-16 score, fitted on the first
    frame and updated on computed frames; the stage takes it as an input named ``score``."""
    m = _build("3-7", target_model=True)
    spec = {s.name: s for s in m.stage_specs()}["mask_decoder"]
    assert "score" in spec.input_names and spec.inputs[spec.input_names.index("score")].shape == (1, 1, 4, 6)
    seq = _seq(n=5)
    s = Session.from_model(m, family="slowfast", tau=1.0)
    s.start(seq.frame(0), seq.mask(0))
    feeds = []
    run = s.program.backend.run

    def spy(stage, f, *a, **kw):
        if stage == "mask_decoder":
            feeds.append(np.array(f["score"], copy=True))
        return run(stage, f, *a, **kw)

    s.program.backend.run = spy
    assert len(s.program.objects) == 2 and all(o.target is not None for o in s.program.objects)
    for i in range(1, 5):
        r = s.step(seq.frame(i))
        assert "target_model" in r.stage_ms
    assert len(feeds) == 4 * len(s.program.objects)
    assert all(np.isfinite(f).all() and f.std() > 0 for f in feeds)
    # the score matters: zeroing it changes the decoder's output
    mods = m.stage_modules()
    fd = spec.dummy_feeds()
    fd = {k: torch.from_numpy(v) for k, v in fd.items()}
    with torch.no_grad():
        a = mods["mask_decoder"](*[fd[n] for n in spec.input_names])[0]
        fd["score"] = fd["score"] + 5.0
        b = mods["mask_decoder"](*[fd[n] for n in spec.input_names])[0]
    assert not torch.allclose(a, b)
    with pytest.raises(InputError, match="target_model needs mode='semi'"):
        get_family("slowfast").build(input_size=SIZE, mode="unsupervised", target_model=True)


def test_target_model_updates_count_the_frames_the_gate_reused(monkeypatch):
    """A computed frame after n reuses updates the target models with frames = n + 1 (the refit
    schedule runs on frames)."""
    from edgevos.target_model import TargetModel

    seen = []
    real = TargetModel.update
    monkeypatch.setattr(TargetModel, "update", lambda self, x, y, frames=1, **k: seen.append(frames) or real(self, x, y, frames, **k))
    m = _build("3-7", target_model=True)
    seq = _seq(n=8)
    s = Session.from_model(m, family="slowfast", tau=0.0, max_reuse=2)
    s.start(seq.frame(0), seq.mask(0))
    pattern = [s.step(seq.frame(i)).reused for i in range(1, 8)]
    assert pattern == [True, True, False, True, True, False, True]
    assert seen == [3] * len(s.program.objects) * 2


def test_target_model_training_starts_from_an_older_checkpoint(tmp_path):
    """--init widens the decoder input for the score channel (zeros) and keeps every other weight."""
    from edgevos.models.weights import load_checkpoint
    from edgevos.train.slowfast import TrainConfig, Trainer, corrupt_mask

    base = TrainConfig(out=str(tmp_path / "a"), synthetic=2, synthetic_frames=6, input_size=SIZE, preset="3-7",
                       steps=1, batch=1, clip_len=2)
    old = Trainer(base).run()
    cfg = TrainConfig(**{**base.__dict__, "out": str(tmp_path / "b"), "target_model": True, "init": str(old),
                         "corrupt_prev": 1.0})
    tr = Trainer(cfg)
    prev = load_checkpoint("slowfast", old)["state_dict"]
    w = tr.model.state_dict()["decoder.level16.0.weight"]
    w_old = prev["decoder.level16.0.weight"].float()
    assert w.shape[1] == w_old.shape[1] + 1 and torch.equal(w[:, :-1], w_old) and not w[:, -1].any()
    assert torch.equal(tr.model.state_dict()["reference.embed.0.0.weight"], prev["reference.embed.0.0.weight"].float())
    path = tr.run()
    assert get_family("slowfast").build(weights=path, input_size=SIZE).config.target_model
    y = np.zeros((40, 60), np.float32)
    y[10:30, 20:40] = 1
    rng = np.random.default_rng(0)
    assert any(not np.array_equal(corrupt_mask(y, rng), y) for _ in range(5))


def test_unsupervised_model_is_evaluated_on_every_frame_and_runs_without_a_mask(tmp_path):
    """DAVIS unsupervised protocol: every frame, all objects as one foreground; the pipeline starts
    an unsupervised model without a first mask and refuses one."""
    from edgevos.evaluate_model import run_sequence
    from edgevos.metrics import evaluate_sequence
    from edgevos.runtime.pipeline import run

    gts = [np.zeros((20, 30), np.uint8) for _ in range(4)]
    for g in gts:
        g[2:8, 2:8], g[10:16, 10:20] = 1, 2
    preds = [(g > 0).astype(np.uint8) for g in gts]
    preds[0][:] = 0  # frame 0 counts in the unsupervised protocol
    ev = evaluate_sequence(gts, preds, protocol="unsupervised")
    assert ev["object_ids"] == [1] and ev["frames"] == [0, 1, 2, 3]
    assert ev["J"][1].tolist() == [0.0, 1.0, 1.0, 1.0]
    with pytest.raises(InputError, match="protocol"):
        evaluate_sequence(gts, preds, protocol="zero-shot")

    m = _build("3-7", mode="unsupervised")
    s = Session.from_model(m, family="slowfast")
    assert not s.supervised
    seq = _seq(n=4)
    out = run_sequence(s, seq)
    assert out["eval"]["frames"] == [0, 1, 2, 3] and out["eval"]["object_ids"] == [1]
    summary = run("test://?frames=3", [f"masks://{tmp_path / 'm'}"], session=Session.from_model(m, family="slowfast"),
                  unsupervised=True, power=False)
    assert summary.frames == 3
    with pytest.raises(InputError, match="unsupervised"):
        run("test://?frames=3", [], session=Session.from_model(m, family="slowfast"), init_box=["1,1,10,10"],
            power=False)
    with pytest.raises(InputError, match="needs an unsupervised model"):
        run("test://?frames=3", [], session=Session.from_model(_build("3-7"), family="slowfast"), unsupervised=True,
            power=False)


def test_unsupervised_model_starts_from_a_semi_supervised_encoder(tmp_path):
    from edgevos.train.slowfast import TrainConfig, Trainer, init_from

    base = TrainConfig(out=str(tmp_path / "a"), synthetic=2, synthetic_frames=6, input_size=SIZE, preset="3-7",
                       steps=1, batch=1, clip_len=2)
    semi = Trainer(base).run()
    m = _build("3-7", mode="unsupervised")
    fresh = init_from(m, semi)
    assert fresh and all(k.startswith("decoder.") for k in fresh)  # the conditioning inputs differ
    from edgevos.models.weights import load_checkpoint

    state = load_checkpoint("slowfast", semi)["state_dict"]
    assert torch.equal(m.state_dict()["laterals.1.conv.weight"], state["laterals.1.conv.weight"].float())
    with pytest.raises(InputError, match="same preset"):
        init_from(_build("1-1", mode="unsupervised"), semi)


def test_unsupervised_program_calibrates_and_passes_parity():
    """Export's calibration run and end-to-end parity start an unsupervised program without a mask
    and score it with the unsupervised protocol."""
    from edgevos.backend import TorchBackend
    from edgevos.export.calibrate import run_program
    from edgevos.export.parity import end_to_end

    m = _build("3-7", mode="unsupervised")
    fam = get_family("slowfast")
    config = {"input_size": list(SIZE), "preset": "3-7", "mode": "unsupervised"}
    backend = TorchBackend(m.stage_modules(), m.stage_specs())
    seq = _seq(n=4)
    masks = run_program(fam.make_program(backend, config), seq)
    assert len(masks) == 4 and masks[0].shape == seq.frame(0).shape[:2]
    rep = end_to_end(lambda b: fam.make_program(b, config), backend, {"fp32": backend}, [seq])
    assert rep["sequences"][0]["reference"] is not None and rep["per_precision"]["fp32"]["iou_vs_reference_mean"] == 1.0


def test_target_model_reads_the_configured_slow_pathway_outputs():
    """target_inputs f16+f8: the target model sees f16 with the stride-8 map box-averaged onto it."""
    from edgevos.programs.base import resize_map, stack_at

    m = _build("3-7", target_model=True, proj_dim=8, target_inputs=["f16", "f8"])
    seq = _seq(n=3)
    s = Session.from_model(m, family="slowfast", tau=1.0)
    s.start(seq.frame(0), seq.mask(0))
    specs = {sp.name: sp for sp in m.stage_specs()}
    outs = {t.name: t.shape for t in specs["slow_body"].outputs}
    want = outs["f16"][1] + outs["f8"][1]
    assert all(o.target.in_channels == want for o in s.program.objects)
    for i in (1, 2):
        assert s.step(seq.frame(i)).mask.shape == seq.frame(i).shape[:2]
    f8 = np.random.default_rng(0).normal(size=(1, 3, 8, 12)).astype(np.float32)
    f16 = np.zeros((1, 2, 4, 6), np.float32)
    got = stack_at({"f16": f16, "f8": f8}, ("f16", "f8"), (4, 6))
    area = np.stack([resize_map(c, (4, 6), area=True) for c in f8[0]])
    np.testing.assert_allclose(got[2:], area, atol=1e-6)  # exact 2x: the box average OpenCV's area resize gives
    with pytest.raises(InputError, match="target_inputs"):
        _build("3-7", target_model=True, target_inputs=["f8"])


@pytest.mark.parametrize("updates", ["prediction", "ground-truth"])
def test_target_model_training_updates_with_the_truth_only_when_teacher_forced(tmp_path, monkeypatch, updates):
    """--tm-updates ground-truth: the training target model learns the ground truth of the warm-up
    frames and of every segment frame; the default learns the model's own (detached) predictions."""
    from edgevos.train import slowfast as train_slowfast
    from edgevos.train.slowfast import TrainConfig, Trainer

    cfg = TrainConfig(out=str(tmp_path), synthetic=1, synthetic_frames=12, input_size=SIZE, preset="3-7",
                      steps=1, batch=1, clip_len=3, target_model=True, corrupt_prev=0.0, tm_updates=updates)
    tr = Trainer(cfg)
    tr.prepare()
    seen = []

    class Recorder:
        def __init__(self, tm):
            self.tm = tm

        def classify(self, f16):
            return self.tm.classify(f16)

        def update(self, f16, y):
            seen.append(np.asarray(y, np.float32).copy())
            self.tm.update(f16, y)

    real = Trainer._target_model
    monkeypatch.setattr(Trainer, "_target_model", lambda self, f, y: Recorder(real(self, f, y)))
    monkeypatch.setattr(Trainer, "_sample", lambda self: (0, 8, 3, 1, 1.0, False))
    tr.sample_loss(0.0)
    d = tr.data[0]
    truth = [train_slowfast._area((d["masks"][t] == 1).astype(np.float32), seen[0].shape) for t in range(12)]
    warm = min(tr.rf - 1, 8)
    if updates == "ground-truth":
        assert len(seen) == warm + 3
        for y, t in zip(seen, list(range(8 - warm, 8)) + [8, 9, 10]):
            np.testing.assert_allclose(y, truth[t], atol=1e-6)
    else:
        assert len(seen) == 3  # segment frames only, with soft predictions, not the binary truth
        assert not any(np.allclose(y, truth[t], atol=1e-3) for y, t in zip(seen, [8, 9, 10]))


def test_slowfast_training_takes_composite_clips_of_training_sequences_only(tmp_path):
    """--composites N (shared with gfrtm): N clips pasted from the training sequences join the data;
    a held-out sequence never enters one."""
    from edgevos.data import SyntheticConfig, make_sequence, write_davis
    from edgevos.train.slowfast import TrainConfig, Trainer

    seqs = [make_sequence(SyntheticConfig(height=64, width=96, num_frames=5, num_objects=1, seed=s, name=f"v{s}"))
            for s in range(4)]
    write_davis(tmp_path / "davis", seqs)
    cfg = TrainConfig(out=str(tmp_path / "run"), davis=(str(tmp_path / "davis"),), heldout=("v3",), synthetic=0,
                      input_size=SIZE, composites=4)
    names = [s.name for s in Trainer(cfg).sequences()]
    comps = [n for n in names if n.startswith("composite-")]
    assert len(comps) == 4 and len(names) == 7
    assert all("v3" not in n.split("-", 2)[2].split("+") for n in comps)


def test_training_target_model_reads_what_the_program_reads(tmp_path, monkeypatch):
    """--proj-dim / --target-inputs reach SlowFast training: the training target model projects to
    proj_dim channels from the slow pathway's f16 + pooled f8, as the program's does on the same model."""
    from edgevos.cli import main
    from edgevos.models.weights import load_checkpoint
    from edgevos.target_model import TargetModel

    made = []
    init = TargetModel.__init__
    monkeypatch.setattr(TargetModel, "__init__", lambda self, cfg, in_channels, seed=0:
                        made.append((cfg.proj_dim, in_channels)) or init(self, cfg, in_channels, seed))
    out = tmp_path / "run"
    assert main(["train", "slowfast", "--synthetic", "1", "--max-frames", "10", "--input-size", "64x96",
                 "--preset", "3-7", "--steps", "1", "--batch", "1", "--clip-len", "2", "--target-model",
                 "--proj-dim", "16", "--target-inputs", "f16+f8", "--out", str(out)]) == 0
    cfg = load_checkpoint("slowfast", out / "slowfast_3-7_final.pt")["config"]
    assert cfg["proj_dim"] == 16 and tuple(cfg["target_inputs"]) == ("f16", "f8")
    trained = set(made)
    made.clear()
    model = get_family("slowfast").build(weights=str(out / "slowfast_3-7_final.pt"))
    s = Session.from_model(model, tau=1.0)
    assert len(trained) == 1 and next(iter(trained))[0] == 16
    f0 = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    m0 = np.zeros((64, 96), np.uint8)
    m0[16:48, 24:72] = 1
    s.start(f0, m0)
    assert set(made) == trained  # same projection and input channels at run time


def test_reuse_only_training_moves_the_gate_and_reuse_decoder_alone(tmp_path):
    """--reuse-only: after training, every tensor outside the gate and the reuse decoder (BatchNorm
    statistics included) equals the --init checkpoint's, so tau 1 is unchanged; the reuse path moved.
    Without --init it is refused with the fix named."""
    from edgevos.models.weights import load_checkpoint
    from edgevos.train.slowfast import REUSE_PATH, TrainConfig, Trainer

    base = TrainConfig(out=str(tmp_path / "a"), synthetic=2, synthetic_frames=6, input_size=SIZE, preset="3-7",
                       steps=1, batch=1, clip_len=3, target_model=True)
    old = Trainer(base).run()
    cfg = TrainConfig(**{**base.__dict__, "out": str(tmp_path / "b"), "init": str(old), "reuse_only": True,
                         "gate_target": "agreement", "max_gap": 2, "steps": 2, "lr": 0.01})
    new = Trainer(cfg).run()
    a, b = load_checkpoint("slowfast", old)["state_dict"], load_checkpoint("slowfast", new)["state_dict"]
    assert a.keys() == b.keys()
    fixed = [k for k in a if not k.startswith(REUSE_PATH)]
    moved = [k for k in a if k.startswith(REUSE_PATH) and not torch.equal(a[k], b[k])]
    assert fixed and all(torch.equal(a[k], b[k]) for k in fixed), [k for k in fixed if not torch.equal(a[k], b[k])]
    assert any(k.startswith("gate.") for k in moved) and any(k.startswith("reuse_decoder.") for k in moved)
    with pytest.raises(InputError, match="--init"):
        Trainer(TrainConfig(**{**base.__dict__, "out": str(tmp_path / "c"), "reuse_only": True}))


def test_agreement_gate_target_compares_the_reused_mask_with_the_computed_one(tmp_path, monkeypatch):
    """--gate-target agreement: P_target is the IoU of the reuse decoder's mask with the computed path's
    mask on the same frame (here forced to agree fully, then to be disjoint), not the object's motion."""
    from edgevos.train import slowfast as train_slowfast
    from edgevos.train.slowfast import TrainConfig, Trainer

    seen = []
    monkeypatch.setattr(train_slowfast, "gate_probability_loss",
                        lambda p, target, m2: seen.append(float(target)) or (p * 0).sum())
    for agree in (True, False):
        cfg = TrainConfig(out=str(tmp_path / str(agree)), synthetic=1, synthetic_frames=10, input_size=SIZE,
                          preset="3-7", steps=1, batch=1, clip_len=3, gate_target="agreement", m1=0.0)
        tr = Trainer(cfg)
        tr.prepare()
        monkeypatch.setattr(Trainer, "_sample", lambda self: (0, 5, 3, 1, 1.0, False))
        decode = tr.model.decode
        monkeypatch.setattr(tr.model, "decode", lambda *a: (torch.ones_like(decode(*a)[0]) * 5, decode(*a)[1]))
        monkeypatch.setattr(tr.model, "decode_reuse",
                            lambda f4, *a, s=1 if agree else -1: torch.ones(1, 1, *f4.shape[-2:]) * 5 * s)
        seen.clear()
        tr.sample_loss(0.0)
        assert seen == [1.0 if agree else 0.0] * 2
    from edgevos.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "slowfast", "--gate-target", "motion"])
    training = get_family("slowfast").training()
    args = build_parser().parse_args(["train", "slowfast", "--gate-target", "agreement", "--max-gap", "2", "--reuse-only"])
    cfg = training.config(args)
    assert (cfg.gate_target, cfg.max_gap, cfg.reuse_only) == ("agreement", 2, True)
    assert training.config(build_parser().parse_args(["train", "slowfast"])).max_gap == 5  # slowfast's own default
    with pytest.raises(InputError, match="--gate-target accuracy: slowfast trains mask-iou or agreement"):
        training.config(build_parser().parse_args(["train", "slowfast", "--gate-target", "accuracy"]))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "slowfast", "--max-gap", "0"])


def test_training_draws_another_sample_when_the_reference_object_vanishes(tmp_path, monkeypatch):
    """A random-scale crop can shrink the reference object below what the target model can fit (its
    InputError): training draws another sample instead of stopping the run."""
    from edgevos.train.slowfast import TrainConfig, Trainer

    cfg = TrainConfig(out=str(tmp_path), synthetic=1, synthetic_frames=8, input_size=SIZE, preset="3-7",
                      steps=1, batch=1, clip_len=2, target_model=True)
    tr = Trainer(cfg)
    tr.prepare()
    calls = []
    real = Trainer._target_model

    def target_model(self, f16, y):
        calls.append(1)
        if len(calls) == 1:
            raise InputError("first-frame label covers under 10 image pixels")
        return real(self, f16, y)

    monkeypatch.setattr(Trainer, "_target_model", target_model)
    loss, _ = tr.sample_loss(0.0)
    assert len(calls) == 2 and torch.isfinite(loss) and loss.requires_grad


def test_reuse_blend_mixes_the_previous_mask_and_exports(tmp_path):
    """reuse_blend: decoder_reuse returns w * logit(prev4) + (1 - w) * its own logits, w from a conv that
    starts at 0.12 everywhere; w -> 1 gives back the previous mask; the stage exports with FP32 parity."""
    m = _build("3-7", reuse_blend=True)
    plain = _build("3-7")
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("reuse_decoder.blend.")})
    d = m.reuse_decoder
    g = torch.Generator().manual_seed(3)
    h4, w4 = SIZE[0] // 4, SIZE[1] // 4
    fast4 = torch.randn(1, d.level4[0].in_channels - 1, h4, w4, generator=g)
    fast8 = torch.randn(1, d.translate[0][0].in_channels - d.project4[0].in_channels - 1, h4 // 2, w4 // 2,
                        generator=g)
    r8 = torch.rand(1, d.project4[0].in_channels, h4 // 2, w4 // 2, generator=g)
    prev4 = torch.rand(1, 1, h4, w4, generator=g).clamp(0.05, 0.95)
    with torch.no_grad():
        own = plain.reuse_decoder(fast4, fast8, r8, prev4)
        out = d(fast4, fast8, r8, prev4)
        w = torch.sigmoid(torch.tensor(-2.0))
        torch.testing.assert_close(out, w * torch.logit(prev4) + (1 - w) * own, atol=1e-5, rtol=1e-5)
        d.blend.bias.fill_(30.0)
        torch.testing.assert_close(d(fast4, fast8, r8, prev4), torch.logit(prev4), atol=1e-4, rtol=1e-4)
    assert not plain.reuse_decoder.blend
    _export("3-7", tmp_path, reuse_blend=True)


def test_reuse_training_chains_the_reused_frames_as_the_run_does(tmp_path, monkeypatch):
    """A gap of n frames trains decoder_reuse as a run reuses them: the frames t-n+1..t-1 are reused
    from the computed frame t-n first, each reading the previous frame's mask (the reuse path's own
    from the second on), and frame t and its gate read the last of them."""
    from edgevos.train.slowfast import TrainConfig, Trainer

    cfg = TrainConfig(out=str(tmp_path), synthetic=1, synthetic_frames=10, input_size=SIZE, preset="3-7",
                      steps=1, batch=1, clip_len=3, max_gap=3, corrupt_prev=0.0)
    tr = Trainer(cfg)
    tr.prepare()
    monkeypatch.setattr(Trainer, "_sample", lambda self: (0, 5, 3, 1, 1.0, False))

    class Rng:  # the largest gap every time; the rest of the sampling as before
        def __init__(self, rng):
            self.rng = rng

        def integers(self, lo, hi=None):
            return hi - 1 if hi is not None else self.rng.integers(lo)

        def __getattr__(self, name):
            return getattr(self.rng, name)

    tr.rng = Rng(tr.rng)
    m = tr.model
    calls, gates = [], []
    decode, reuse, gate = m.decode, m.decode_reuse, m.gate.forward
    computed = []
    monkeypatch.setattr(m, "decode", lambda *a: computed.append(decode(*a)) or computed[-1])
    monkeypatch.setattr(m, "decode_reuse", lambda f4, f8, r8, p: calls.append((r8, p, reuse(f4, f8, r8, p))) or calls[-1][2])
    monkeypatch.setattr(m.gate, "forward", lambda f8, f8p, p: gates.append(p) or gate(f8, f8p, p))
    with torch.no_grad():
        tr.sample_loss(0.0)
    # frame 1: gap 1 from frame 0 (one call); frame 2: gap 2 from frame 0 (a chain of two)
    assert len(calls) == 3 and len(gates) == 2
    p0 = torch.sigmoid(computed[0][0])
    assert torch.equal(calls[0][1], p0) and torch.equal(calls[1][1], p0)
    torch.testing.assert_close(calls[2][1], torch.sigmoid(calls[1][2]))
    assert torch.equal(calls[2][0], computed[0][1]) and torch.equal(calls[1][0], computed[0][1])
    assert gates[1] is calls[2][1]
