"""The public API: ``from edgevos import Session, export_bundle, run, evaluate, benchmark``."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevos.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_public_names_import_without_torch_or_gstreamer():
    code = ("import sys\n"
            "from edgevos import Session, export_bundle, run, evaluate, benchmark, RunSummary\n"
            "import edgevos\n"
            "assert callable(export_bundle) and callable(run) and callable(evaluate) and callable(benchmark)\n"
            "print(sorted(m for m in ('torch', 'gi', 'tensorrt') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import edgevos

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgevos.nope  # noqa: B018


def test_samples_use_only_the_public_api():
    allowed = {"edgevos", "edgevos.data", "edgevos.evaluate_model"}
    for path in sorted((ROOT / "samples").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgevos"):
                assert node.module in allowed, f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("edgevos.") for a in node.names), path.name


def test_no_code_shells_out_to_the_cli_for_export():
    needle = '"-m", "edgevos", ' + '"export"'
    for folder in ("sdk", "export", "runtime", "samples", "scripts", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            assert needle not in path.read_text(), f"{path.name} runs `python -m edgevos export`: call export_bundle"



def test_library_and_samples_never_shell_out_to_the_cli():
    """The package, samples, scripts and benchmarks call functions, not ``python -m edgevos VERB``; where a
    process is spawned on purpose it runs a function (export_bundle's isolate, tested below)."""
    needle = '"-m", "edgevos"'
    for folder in ("sdk", "export", "runtime", "jetson", "samples", "scripts", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            assert needle not in path.read_text(), f"{path.relative_to(ROOT)} runs `python -m edgevos`"


def test_slowfast_presets_trains_and_evaluates_in_process(tmp_path, monkeypatch, capsys):
    """benchmarks/slowfast_presets.py trains each preset once per seed with the TrainConfig ``edgevos train
    slowfast`` would build from the same options, evaluates it with edgevos.evaluate in this process, and
    reports the mean over seeds and their spread."""
    pytest.importorskip("torch")
    import importlib.util

    from PIL import Image

    import edgevos
    import edgevos.train.slowfast as train_slowfast
    from edgevos.cli import build_parser
    from edgevos.models.registry import get_family

    davis = tmp_path / "davis"
    for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        (davis / sub / "480p" / "seq-a").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB" if ext == "jpg" else "L", (64, 48)).save(davis / sub / "480p" / "seq-a" / f"{i:05d}.{ext}")
    trained, evaluated = [], []

    class Trainer:
        def __init__(self, cfg):
            trained.append(cfg)

        def run(self):
            path = Path(trained[-1].out) / f"slowfast_{trained[-1].preset}_final.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            return path

    def evaluate(sequences, tau, **kw):
        evaluated.append(([s.name for s in sequences], tau, kw))
        jf = 0.5 if len(evaluated) == 1 else 0.6  # seed 0, seed 1
        return [{"tau": t, "J&F": jf, "J": jf, "F": jf, "reuse_rate": 0.0 if t == 1 else 0.4, "fps": 9.0,
                 "sequences": [{"sequence": "seq-a", "J": jf, "F": jf}]} for t in tau]

    monkeypatch.setattr(train_slowfast, "Trainer", Trainer)
    monkeypatch.setattr(edgevos, "evaluate", evaluate, raising=False)
    spec = importlib.util.spec_from_file_location("slowfast_presets", ROOT / "benchmarks" / "slowfast_presets.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "model_facts", lambda preset, weights: {"params_M": 1.0, "slow_frames": 1,
                                                                        "fast_frames": 7, "train_steps": 5})
    runs = tmp_path / "runs"
    assert script.main(["--presets", "1-7", "--seeds", "0,1", "--steps", "5", "--target-model", "--davis", str(davis),
                        "--backbone-weights", "w.pth", "--sequences", "seq-a", "--runs", str(runs), "--threads", "2",
                        "--tau", "0.6", "--max-reuse", "3", "--json", str(tmp_path / "t.json")]) == 0
    cli = [build_parser().parse_args(["train", "slowfast", "--preset", "1-7", "--davis", str(davis), "--steps", "5",
                                      "--threads", "2", "--out", str(runs / "1-7" / f"seed{k}"), "--backbone-weights",
                                      "w.pth", "--seed", str(k), "--target-model"]) for k in (0, 1)]
    assert trained == [get_family("slowfast").training().config(c) for c in cli]
    assert evaluated == [(["seq-a"], [1.0, 0.6], {"family": "slowfast",
                                                  "weights": str(runs / "1-7" / f"seed{k}" / "slowfast_1-7_final.pt"),
                                                  "max_reuse": 3, "threads": 2, "progress": False}) for k in (0, 1)]
    saved = json.loads((runs / "1-7" / "seed1" / "eval" / "model_eval.json").read_text())
    assert saved["family"] == "slowfast" and [r["tau"] for r in saved["rows"]] == [1.0, 0.6]
    table = json.loads((tmp_path / "t.json").read_text())
    assert [(r["preset"], r["tau"], r["max_reuse"], r["seeds"]) for r in table["rows"]] == [
        ("1-7", 1.0, None, [0, 1]), ("1-7", 0.6, 3, [0, 1])]
    top = table["rows"][0]
    assert top["J&F"] == pytest.approx(55.0) and top["spread"] == pytest.approx(10.0)
    assert top["J&F_per_seed"] == pytest.approx([50.0, 60.0]) and top["per_sequence_JF"]["seq-a"] == pytest.approx(55.0)
    assert len(table["runs"]) == 4 and table["target_model"] is True
    assert "| 1-7 | 1/7 | 5 | 1.00 | 1 | - | 55.0 | 10.0 | 50.0 / 60.0 |" in capsys.readouterr().out
    # a rerun finds the weights and the evaluations on disk
    assert script.main(["--presets", "1-7", "--seeds", "1,0", "--davis", str(davis), "--runs", str(runs)]) == 0
    assert len(trained) == 2 and len(evaluated) == 2
    # bad seeds: a clear message, no traceback
    with pytest.raises(SystemExit, match="--seeds 'a,b'"):
        script.main(["--presets", "1-7", "--seeds", "a,b", "--runs", str(runs)])


def test_export_bundle_spawns_where_gstreamer_is_loaded(monkeypatch, tmp_path):
    import edgevos.export.exporter as exporter
    from edgevos import export_bundle

    calls = []
    monkeypatch.setattr(exporter, "_export", lambda out, **kw: calls.append(("here", out)) or out)
    monkeypatch.setattr(exporter, "_export_spawned", lambda out, kw, log: calls.append(("spawned", out)) or out)
    monkeypatch.delitem(sys.modules, "gi.repository.Gst", raising=False)
    export_bundle(tmp_path / "a", "gfrtm")
    monkeypatch.setitem(sys.modules, "gi.repository.Gst", object())
    export_bundle(tmp_path / "b", "gfrtm")
    export_bundle(tmp_path / "c", "gfrtm", isolate=False)
    assert calls == [("here", tmp_path / "a"), ("spawned", tmp_path / "b"), ("here", tmp_path / "c")]


def test_export_bundle_in_a_spawned_process_raises_the_same_error(tmp_path):
    from edgevos import export_bundle

    log = tmp_path / "export.log"
    with pytest.raises(InputError, match="unknown model family 'nope'"):
        export_bundle(tmp_path / "o", "nope", precisions="fp32", input_size="64x96", isolate=True, log=log)
    with pytest.raises(InputError, match="--precision int4"):
        export_bundle(tmp_path / "o", "gfrtm", precisions="int4", isolate=True)


def _tiny_session(tau=0.5):
    import torch

    from edgevos import Session
    from edgevos.models.registry import get_family

    torch.manual_seed(0)
    model = get_family("gfrtm").build(input_size=(128, 224))
    assert model.family == "gfrtm"  # a model carries its family
    return Session.from_model(model, tau=tau, threads=1)


def test_session_reset_forgets_the_video():
    from edgevos.data import SyntheticConfig, make_sequence

    seq = make_sequence(SyntheticConfig(height=128, width=224, num_frames=6, num_objects=1, seed=4))
    session = _tiny_session()

    def play():
        masks = [session.start(seq.frame(0), seq.mask(0)).mask]
        masks += [session.step(seq.frame(i)).mask for i in range(1, len(seq))]
        return masks

    first = play()
    program = session.program
    session.reset()
    assert session.program is not program and session.object_ids == [] and session.tau == 0.5
    with pytest.raises(InputError, match="before start"):
        session.step(seq.frame(1))
    again = play()
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_run_segments_a_source_uri_into_sinks(tmp_path):
    from edgevos import RunSummary, run

    session = _tiny_session(tau=1.0)
    log = tmp_path / "log.json"
    s = run("test://?frames=6&size=128x224&objects=1", [f"masks://{tmp_path / 'm'}"], session=session,
            warmup=1, power=False, log=log)
    assert isinstance(s, RunSummary) and s.exit_code == 0 and s.stopped_by == "end of stream"
    assert s.frames == 6 and s.sink_frames == [6] and len(list((tmp_path / "m").glob("*.png"))) == 6
    assert s.mean_j is not None and len(s.stats.records) == 6
    data = json.loads(log.read_text())
    assert data["summary"] == json.loads(json.dumps(s.as_dict())) and len(data["frames"]) == 6
    with pytest.raises(InputError, match="exactly one of bundle= .* or session="):
        run("test://", [])
    with pytest.raises(InputError, match="--init-box"):
        run("file://clip.mp4", [], session=session)


def test_run_sets_the_size_rule_and_refuses_it_for_a_model_without_one():
    import torch

    from edgevos import Session, run
    from edgevos.models.registry import get_family

    session = _tiny_session(tau=0.85)
    assert session.program.reuse_max_area == 1.0  # a model built without the rule
    s = run("test://?frames=3&size=128x224&objects=1", [], session=session, reuse_max_area=0.3, warmup=1, power=False)
    assert s.exit_code == 0 and session.program.reuse_max_area == 0.3
    torch.manual_seed(0)
    slowfast = Session.from_model(get_family("slowfast").build(input_size=(64, 96)), tau=1.0, threads=1)
    with pytest.raises(InputError, match="only gfrtm"):
        run("test://?frames=3&size=64x96&objects=1", [], session=slowfast, reuse_max_area=0.3, power=False)
