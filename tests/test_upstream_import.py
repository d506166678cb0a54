"""Importing FRTM / Reuse_VOS ResNet18 checkpoints onto G-FRTM-fast (decoder="frtm").

Upstream files are generated here from the documented layout (key names and
shapes of edgevos.models.upstream.mapping, random values).
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from edgevos.errors import InputError  # noqa: E402
from edgevos.models.gfrtm import FRTM_PRESET, GfrtmConfig, build_gfrtm  # noqa: E402
from edgevos.models.upstream import import_upstream, mapping  # noqa: E402

SIZE = (64, 128)


def _upstream_state(kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for up, _, shape in mapping(kind):
        if up.endswith("num_batches_tracked"):
            sd[up] = torch.tensor(7)
        elif up.endswith("running_var"):
            sd[up] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 4:
            sd[up] = torch.randn(shape, generator=g) / float(np.prod(shape[1:])) ** 0.5
        else:
            sd[up] = 0.1 * torch.randn(shape, generator=g)
    return sd


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reuse_ckpt(tmp_path_factory):
    sd = _upstream_state("reuse_vos")
    ckpt, report = import_upstream({"model": sd, "epoch": 3}, input_size=SIZE)
    path = tmp_path_factory.mktemp("imp") / "reuse.pt"
    torch.save(ckpt, path)
    return sd, ckpt, report, path


@pytest.mark.parametrize("kind", ["frtm", "reuse_vos"])
def test_every_upstream_tensor_lands_in_its_place(kind):
    sd = _upstream_state(kind, seed=1)
    ckpt, report = import_upstream({"model": sd}, input_size=SIZE)
    assert report["kind"] == kind and report["mapped_tensors"] == len(sd)
    state = ckpt["state_dict"]
    for up, ev, _ in mapping(kind):
        assert torch.equal(state[ev], sd[up].to(state[ev].dtype)), (up, ev)
    decoder_keys = {k for k in state if not k.startswith("backbone.")}
    mapped = {ev for _, ev, _ in mapping(kind)}
    if kind == "reuse_vos":
        assert mapped == decoder_keys  # nothing after the backbone is left random
        assert report["reinitialised_modules"] == []
    else:
        assert {k.split(".")[0] for k in decoder_keys - mapped} == {"matcher", "gate", "delta", "translator"}
        assert report["reinitialised_modules"] == ["matcher", "gate", "delta", "translator"]
    assert not report["backbone_loaded"] and "NOT LOADED" in report["backbone"]
    assert ckpt["config"]["decoder"] == "frtm" and ckpt["config"]["proj_dim"] == 96


def test_imported_checkpoint_builds_and_runs_both_paths(reuse_ckpt):
    sd, _, _, path = reuse_ckpt
    m = build_gfrtm(weights=str(path), input_size=SIZE)
    assert m.config.decoder == "frtm" and m.config.backbone == "resnet18"
    assert torch.equal(m.gate.conv2.weight, sd["convGS.4.weight"])
    h, w = SIZE
    with torch.no_grad():
        f4, f8 = m.encode_low(torch.rand(1, 3, h, w) * 255)
        f16, f32 = m.encode_high(f8)
        score = torch.randn(1, 1, h // 16, w // 16)
        logits, r8 = m.decode_full(f4, f8, f16, f32, score)
        template, embed = m.matcher.template(f8, (torch.rand(1, 1, h // 8, w // 8) > 0.5).float())
        p, delta, embed2 = m.gate_forward(f8, score, template, embed)
        reused = m.decode_reuse(f4, f8, r8, score, delta)
    assert logits.shape == reused.shape == (1, 1, h, w)  # FRTM predicts at the input size
    assert r8.shape == (1, 64, h // 16, w // 16) and delta.shape == score.shape
    assert 0 < float(p) < 1 and torch.equal(embed2, embed)
    assert torch.isfinite(logits).all() and torch.isfinite(reused).all()
    assert not torch.allclose(logits, reused)


def test_imported_model_runs_in_the_step_program(reuse_ckpt):
    from edgevos.data import SyntheticConfig, make_sequence
    from edgevos.runtime.session import Session

    seq = make_sequence(SyntheticConfig(height=120, width=210, num_frames=4, num_objects=2, seed=3))
    s = Session.from_model(build_gfrtm(weights=str(reuse_ckpt[3]), input_size=(128, 224)), tau=0.0)
    s.start(seq.frame(0), seq.mask(0))
    results = [s.step(seq.frame(i)) for i in range(1, 4)]
    assert all(r.mask.shape == (120, 210) for r in results)
    assert all(r.reused for r in results)  # tau = 0: every frame takes the translator path


def test_wrong_shape_names_key_and_shapes():
    sd = _upstream_state("reuse_vos")
    sd["refiner.CAB.layer3.convreluconv.0.weight"] = torch.zeros(64, 96, 1, 1)
    with pytest.raises(InputError, match=r"refiner\.CAB\.layer3\.convreluconv\.0\.weight.*\(64, 96, 1, 1\).*\(64, 128, 1, 1\)"):
        import_upstream(sd)


def test_unknown_layouts_are_refused():
    with pytest.raises(InputError, match="not an FRTM / Reuse_VOS checkpoint.*'decoder.weight'"):
        import_upstream({"state_dict": {"decoder.weight": torch.zeros(3)}})
    sd = _upstream_state("frtm")
    sd["refiner.extra_head.weight"] = torch.zeros(1)
    with pytest.raises(InputError, match=r"refiner\.extra_head\.weight.*Unknown layout"):
        import_upstream(sd)
    sd = _upstream_state("frtm")
    del sd["refiner.project.conv2.bias"]
    with pytest.raises(InputError, match=r"lacks 1 keys.*refiner\.project\.conv2\.bias"):
        import_upstream(sd)
    sd = _upstream_state("frtm")
    sd["refiner.TSE.layer4.reduce.0.weight"] = torch.zeros(64, 1024, 1, 1)
    with pytest.raises(InputError, match="ResNet101"):
        import_upstream(sd)
    with pytest.raises(InputError, match="unknown upstream kind"):
        import_upstream(sd, kind="stm")


def test_prefixes_and_bare_refiner_are_understood():
    sd = _upstream_state("frtm")
    ckpt, r = import_upstream({"net": {"module." + k: v for k, v in sd.items()}})
    assert r["kind"] == "frtm" and r["mapped_tensors"] == len(sd)
    bare = {k[len("refiner."):]: v for k, v in sd.items()}
    ckpt2, _ = import_upstream(bare)
    assert torch.equal(ckpt2["state_dict"]["level8.cab.attention.0.weight"], sd["refiner.CAB.layer3.convreluconv.0.weight"])


def _fake_module(name):
    import types

    mod = types.ModuleType(name)
    parent, _, child = name.rpartition(".")
    sys.modules[name] = mod
    if parent:
        sys.modules.setdefault(parent, types.ModuleType(parent))
        setattr(sys.modules[parent], child, mod)
    return mod


def test_training_checkpoint_loads_without_running_its_code(tmp_path):
    import collections

    mod = _fake_module("lib.utils")

    class AverageMeter:  # what the upstream training loops pickle next to the weights
        def __init__(self):
            self.avg = 0.0

    AverageMeter.__module__, AverageMeter.__qualname__ = "lib.utils", "AverageMeter"
    mod.AverageMeter = AverageMeter
    stats = collections.defaultdict(AverageMeter)
    stats["stats/loss"].avg = 0.3
    sd = _upstream_state("frtm")
    torch.save({"name": "rn18", "epoch": 260, "stats": stats, "model": sd}, tmp_path / "rn18_all.pth")

    evil = _fake_module("evil_pkg")

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    Payload.__module__, Payload.__qualname__ = "evil_pkg", "Payload"
    evil.Payload = Payload
    torch.save({"model": sd, "extra": Payload()}, tmp_path / "bad.pth")
    for name in ("lib.utils", "lib", "evil_pkg"):
        sys.modules.pop(name, None)

    ckpt, report = import_upstream(tmp_path / "rn18_all.pth")
    assert report["kind"] == "frtm"
    assert torch.equal(ckpt["state_dict"]["level32.tse.reduce.0.weight"], sd["refiner.TSE.layer5.reduce.0.weight"])
    with pytest.raises(InputError, match="refused to load.*never executed"):
        import_upstream(tmp_path / "bad.pth")
    with pytest.raises(InputError, match="not found"):
        import_upstream(tmp_path / "missing.pth")


# ----------------------------------------------------------------------------- functional checks
def _conv(x, sd, key, pad=None):
    w = sd[key + ".weight"]
    return F.conv2d(x, w, sd.get(key + ".bias"), padding=w.shape[-1] // 2 if pad is None else pad)


def _rrb(x, sd, p):
    """FRTM RRB restated: h = 1x1(x); relu(h + conv(relu(BN(conv(h)))))."""
    h = _conv(x, sd, p + "conv1x1")
    y = _conv(h, sd, p + "bblock.0")
    y = F.batch_norm(y, sd[p + "bblock.1.running_mean"], sd[p + "bblock.1.running_var"],
                     sd[p + "bblock.1.weight"], sd[p + "bblock.1.bias"], False, 0.0, 1e-5)
    return F.relu(h + _conv(F.relu(y), sd, p + "bblock.3"))


def test_one_frtm_level_equals_a_restatement_of_the_upstream_maths(reuse_ckpt):
    """The stride-8 level (TSE, RRB1, CAB with a deeper level, RRB2) computed straight from the
    upstream tensors by their names, against the imported edgevos level."""
    sd, _, _, path = reuse_ckpt
    m = build_gfrtm(weights=str(path), input_size=SIZE)
    g = torch.Generator().manual_seed(5)
    f8, score16 = torch.randn(1, 128, 8, 16, generator=g), torch.randn(1, 1, 4, 8, generator=g)
    deeper = torch.randn(1, 64, 4, 8, generator=g)
    p = "refiner.{}.layer3."
    # TSE: reduce = 1x1, relu, 1x1; transform = 3 x (3x3, relu) on [reduced, score resized to stride 8]
    h = _conv(F.relu(_conv(f8, sd, p.format("TSE") + "reduce.0")), sd, p.format("TSE") + "reduce.2")
    s8 = F.interpolate(score16, size=h.shape[-2:], mode="bilinear", align_corners=False)
    x = torch.cat([h, s8], 1)
    for i in (0, 2, 4):
        x = F.relu(_conv(x, sd, p.format("TSE") + f"transform.{i}"))
    x = _rrb(x, sd, p.format("RRB1"))
    # CAB: attention from the global pools of both levels, deeper level resized and added
    pooled = torch.cat([x.mean((2, 3), keepdim=True), deeper.mean((2, 3), keepdim=True)], 1)
    a = _conv(F.relu(_conv(pooled, sd, p.format("CAB") + "convreluconv.0")), sd, p.format("CAB") + "convreluconv.2")
    x = x * torch.sigmoid(a) + F.interpolate(deeper, size=x.shape[-2:], mode="bilinear", align_corners=False)
    want = _rrb(x, sd, p.format("RRB2"))
    with torch.no_grad():
        got = m.level8(f8, score16, deeper)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_upstream_resampling_blocks_equal_torch_ops():
    from edgevos.models.gfrtm import Bicubic2x, adaptive_max_pool_static

    x = torch.randn(2, 3, 9, 13)
    want = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(Bicubic2x(3)(x), want, rtol=0, atol=2e-6)
    for hw in [(8, 16), (60, 108), (16, 28), (7, 7), (4, 4)]:
        y = torch.randn(1, 4, *hw)
        for n in (7, 3):
            assert torch.equal(adaptive_max_pool_static(y, n), torch.nn.AdaptiveMaxPool2d(n)(y)), (hw, n)


def test_frtm_config_exports_to_onnx(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxslim")
    from edgevos.export.onnx_export import export_stages

    torch.manual_seed(0)
    m = build_gfrtm(input_size=SIZE, **FRTM_PRESET)
    specs = [s for s in m.stage_specs() if s.name in ("gate", "decoder_reuse")]
    assert [s.name for s in m.stage_specs()] == ["encoder_low", "encoder_high", "gate_template", "gate",
                                                "decoder_full", "decoder_reuse"]
    report = {}
    paths = export_stages(m.stage_modules(), specs, tmp_path, report=report)
    assert set(paths) == {"gate", "decoder_reuse"} and all(p.stat().st_size > 0 for p in paths.values())
    assert all(r["max_abs_diff"] <= r["bound"] for r in report.values())


def test_default_config_is_unchanged():
    assert GfrtmConfig().decoder == "light"
    with pytest.raises(InputError, match="decoder 'heavy' is unknown"):
        GfrtmConfig(decoder="heavy")


# ----------------------------------------------------------------------------- CLI
def test_cli_writes_a_checkpoint_edgevos_loads(tmp_path, capsys):
    from edgevos.cli import main
    from edgevos.models.backbones import ResNet18

    sd = _upstream_state("reuse_vos")
    torch.save({"model": sd}, tmp_path / "gfrtm_rn18.pth")
    rn18 = ResNet18()
    torch.save(rn18.state_dict(), tmp_path / "resnet18.pth")
    assert main(["import-weights", str(tmp_path / "gfrtm_rn18.pth"), "--out", str(tmp_path / "x.pt")]) == 1
    assert "--backbone-weights" in capsys.readouterr().err
    rc = main(["import-weights", str(tmp_path / "gfrtm_rn18.pth"), "--out", str(tmp_path / "x.pt"),
               "--backbone-weights", str(tmp_path / "resnet18.pth"), "--json"])
    assert rc == 0 and '"kind": "reuse_vos"' in capsys.readouterr().out
    m = build_gfrtm(weights=str(tmp_path / "x.pt"), input_size=SIZE)
    assert torch.equal(m.backbone.layer3[0].conv1.weight, rn18.layer3[0].conv1.weight)
    assert torch.equal(m.translator.merge.weight, sd["refiner.Diff_process.conv_multi.convBlend.weight"])


def test_cli_verb_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import edgevos.import_weights, edgevos.cli; "
            "assert 'import-weights' in edgevos.cli.COMMANDS")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_documented_table_is_the_code_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "upstream_weights.md").read_text()
    for up, ev, shape in mapping("reuse_vos"):
        assert f"| `{up}` | `{ev}` | {tuple(shape)} |" in doc
