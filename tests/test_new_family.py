"""Adding a model family is three files: a model, a step program and its training
(``toy_family_model.py``, ``toy_family_program.py``, ``toy_family_train.py``) plus one entry in
the family registry.  Registered here at run time, the toy family trains with ``edgevos train``
and runs in ``edgevos bench`` with no other file of the project changed."""
import json

import pytest

pytest.importorskip("torch")

from edgevos.cli import main  # noqa: E402
from edgevos.models import registry  # noqa: E402


@pytest.fixture
def toy_family(monkeypatch):
    fam = registry.Family("toy", "toy family (tests)", "toy_family_model:build_toynet",
                          "toy_family_program:ToyProgram", _training="toy_family_train:TRAINING")
    monkeypatch.setitem(registry.FAMILIES, "toy", fam)
    return fam


def test_train_and_bench_a_family_added_in_three_files(toy_family, tmp_path, capsys):
    argv = ["train", "toy", "--synthetic", "2", "--toy-steps", "12", "--toy-width", "3", "--out", str(tmp_path / "run"),
            "--seed", "1"]
    assert main(argv) == 0
    weights = tmp_path / "run" / "toy_final.pt"
    assert f"trained weights: {weights}" in capsys.readouterr().out
    from edgevos.models.weights import load_checkpoint

    ck = load_checkpoint("toy", weights)
    assert ck["config"]["width"] == 3 and len(ck["meta"]["losses"]) == 12
    assert ck["meta"]["train_config"]["input_size"] == (64, 96)  # the family's default

    out = tmp_path / "bench"
    assert main(["bench", "--source", "test://?size=64x96&objects=1", "--sequences", "synthetic-0", "--frames", "5",
                 "--warmup", "1", "--family", "toy", "--weights", str(weights), "--input-size", "64x96",
                 "--backend", "torch", "--precision", "fp32", "--tau", "1", "--threads", "1", "--no-roofline",
                 "--no-power", "--out", str(out), "-q"]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["family"], r["backend"], r["status"]) for r in rows] == [("toy", "torch", "ok")]
    assert rows[0]["frames"] == 5 and 0 <= rows[0]["J&F"] <= 1
    assert rows[0]["stage_calls_per_frame"] == {"segment": 1.0}


def test_train_cli_lists_and_describes_the_registered_families(toy_family, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "{gfrtm,slowfast,toy}" in text and "--toy-steps" in text and "defaults: --input-size 64x96" in text


def test_a_family_without_training_is_named():
    from edgevos.errors import InputError

    fam = registry.Family("bare", "no trainer", "m:f", "m:C")
    assert not fam.trains and registry.get_family("gfrtm").trains
    with pytest.raises(InputError, match=r"bare has no training: families with one: \['gfrtm', 'slowfast'\]"):
        fam.training()
