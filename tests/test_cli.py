"""edgevos eval and doctor through the CLI entry point."""
import csv
import json

import numpy as np
import pytest

from edgevos.cli import main
from edgevos.data import SyntheticConfig, make_sequence, write_davis, write_mask


@pytest.fixture()
def davis_and_results(tmp_path):
    seqs = [make_sequence(SyntheticConfig(height=48, width=80, num_frames=6, num_objects=k, seed=k, name=f"syn{k}"))
            for k in (1, 2)]
    write_davis(tmp_path / "davis", seqs, imageset="val")
    perfect, shifted = tmp_path / "perfect", tmp_path / "shifted"
    for s in seqs:
        for i, name in enumerate(s.frame_names):
            write_mask(perfect / s.name / f"{name}.png", s.masks[i])
            write_mask(shifted / s.name / f"{name}.png", np.roll(s.masks[i], 3, axis=1))
    return tmp_path, seqs


def test_eval_perfect_results_score_one(davis_and_results, capsys):
    root, _ = davis_and_results
    rc = main(["eval", "--results", str(root / "perfect"), "--davis", str(root / "davis"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "J&F-Mean" in out and "syn2_2" in out
    rows = list(csv.reader(open(root / "perfect" / "global_results.csv")))
    assert rows[0][0] == "J&F-Mean" and all(v in ("1.000", "0.000", "-0.000") for v in rows[1])
    assert rows[1][0] == "1.000"
    per = list(csv.reader(open(root / "perfect" / "per-object_results.csv")))
    assert [r[0] for r in per[1:]] == ["syn1_1", "syn2_1", "syn2_2"]
    js = json.loads((root / "perfect" / "results.json").read_text())
    assert js["global"]["J-Mean"] == 1.0 and len(js["per_frame"]["syn1"]["J"]["1"]) == 4


def test_eval_shifted_results_with_out_and_sequences(davis_and_results, capsys):
    root, _ = davis_and_results
    out = root / "report"
    rc = main(["eval", "--results", str(root / "shifted"), "--davis", str(root / "davis"),
               "--sequences", "syn2", "--out", str(out), "--json", "--no-progress"])
    assert rc == 0
    g = json.loads(capsys.readouterr().out)
    assert 0 < g["J-Mean"] < 1 and g["J&F-Mean"] == pytest.approx((g["J-Mean"] + g["F-Mean"]) / 2)
    per = list(csv.reader(open(out / "per-object_results.csv")))
    assert [r[0] for r in per[1:]] == ["syn2_1", "syn2_2"]


def test_eval_missing_result_frame_is_a_clear_error(davis_and_results, capsys):
    root, seqs = davis_and_results
    (root / "perfect" / "syn1" / "00002.png").unlink()
    rc = main(["eval", "--results", str(root / "perfect"), "--davis", str(root / "davis"), "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "missing result mask" in err and "00002.png" in err


def test_eval_missing_davis_folder(tmp_path, capsys):
    (tmp_path / "res" / "a").mkdir(parents=True)
    write_mask(tmp_path / "res" / "a" / "00000.png", np.zeros((4, 4), np.uint8))
    rc = main(["eval", "--results", str(tmp_path / "res"), "--davis", str(tmp_path / "nope"), "--no-progress"])
    assert rc == 1 and "nope" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_and_verbose_set_the_log_level(davis_and_results, capsys, where):
    """-q: no progress on stderr, the results still on stdout; -v: debug lines too; either
    before the verb or after it."""
    root, _ = davis_and_results
    verb = ["eval", "--results", str(root / "perfect"), "--davis", str(root / "davis")]

    def run(flag):
        argv = ([flag] + verb if where == "before" else verb + [flag]) if flag else verb
        assert main(argv) == 0
        return capsys.readouterr()

    plain, quiet, verbose = run(None), run("-q"), run("-v")
    assert "seq/s" in plain.err and "debug:" not in plain.err and "J&F-Mean" in plain.out  # a progress bar
    assert quiet.err == "" and "J&F-Mean" in quiet.out
    assert "debug: scored 3 object(s)" in verbose.err and "J&F-Mean" in verbose.out


def test_doctor_via_cli_main(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "cpu features" in out and "avx512_vnni" in out


def test_train_arguments_build_both_families_configs():
    """Every `edgevos train` option reaches its family's TrainConfig (and no other family's), which
    the family registry's training builds."""
    pytest.importorskip("torch")
    from edgevos.cli import build_parser
    from edgevos.models.registry import get_family

    gfrtm_config, slowfast_config = (get_family(f).training().config for f in ("gfrtm", "slowfast"))
    p = build_parser()
    a = p.parse_args(["train", "gfrtm", "--davis", "D", "--refiner-stride", "16", "--init", "x.pt",
                      "--phase2-steps", "7", "--batch", "3"])
    g = gfrtm_config(a)
    assert (g.refiner_stride, g.init, g.phase2_steps, g.batch, g.input_size) == (16, "x.pt", 7, 3, (256, 448))
    a = p.parse_args(["train", "slowfast", "--preset", "1-7", "--davis", "D", "--steps", "9"])
    s = slowfast_config(a)
    assert (s.preset, s.steps, s.input_size, s.batch) == ("1-7", 9, (128, 224), 2)


def test_eval_reuse_max_area_is_refused_for_a_family_without_the_size_rule(davis_and_results, capsys):
    root, _ = davis_and_results
    rc = main(["eval", "--family", "slowfast", "--weights", "default", "--davis", str(root / "davis"),
               "--reuse-max-area", "0.1", "--no-progress", "--out", str(root / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "--reuse-max-area 0.1" in err and "only gfrtm" in err
