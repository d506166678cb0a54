"""Usability without surprises: sinks after options, negative box values, files without
video named as such, '?' in file names, and a soak summary that covers the whole run."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_common import gst_or_skip, gst_write  # noqa: E402
from test_run_cli import ColourSession  # noqa: E402

from edgevos.errors import InputError, SourceError  # noqa: E402


@pytest.fixture
def cli(monkeypatch, capsys):
    """``edgevos run`` with the session double; returns (exit code, stdout + stderr)."""
    import edgevos.runtime.session as session_mod
    from edgevos.cli import main

    monkeypatch.setattr(session_mod.Session, "from_bundle", classmethod(lambda cls, *a, **k: ColourSession()))

    def go(*argv):
        rc = main(["run", *map(str, argv)])
        out = capsys.readouterr()
        return rc, out.out + out.err

    return go


# ---------------------------------------------------------------------------------------------
# 11. argument order, negative box values, files without video, '?' in names
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["source-options-sinks", "options-source-sinks", "sink-options-sink"])
def test_sinks_may_come_before_between_or_after_options(cli, tmp_path, order):
    src = "test://?frames=4&size=48x64"
    masks, stats = f"masks://{tmp_path / 'm'}", f"json://{tmp_path / 's.jsonl'}"
    opts = ["--bundle", ".", "--quiet", "--no-power", "--tau", "0.5"]
    argv = {"source-options-sinks": [src, *opts, masks, stats],
            "options-source-sinks": [*opts, src, masks, stats],
            "sink-options-sink": [src, masks, *opts, stats]}[order]
    rc, out = cli(*argv)
    assert rc == 0, out
    assert len(list((tmp_path / "m").glob("*.png"))) == 4 and (tmp_path / "s.jsonl").is_file()


def test_unknown_option_is_still_refused_by_the_verb(capsys):
    from edgevos.cli import main

    with pytest.raises(SystemExit) as ei:
        main(["run", "test://", "--bundle", ".", "--bogus", "masks://x"])
    assert ei.value.code == 2 and "edgevos run: error: unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("spelling", [["--init-box", "-5,3,40,30"], ["--init-box=-5,3,40,30"],
                                      ["--init-box", "-5.5,-3,40,30"]])
def test_negative_box_values_need_no_equals_sign(cli, tmp_path, spelling):
    rc, out = cli("test://?frames=3&size=48x64", f"masks://{tmp_path / 'm'}", "--bundle", ".", *spelling,
                  "--quiet", "--no-power")
    assert rc == 0, out
    assert len(list((tmp_path / "m").glob("*.png"))) == 3


@pytest.mark.gst
@pytest.mark.parametrize("name, desc", [
    ("audio.mp4", "audiotestsrc num-buffers=20 ! audioconvert ! avenc_aac ! mp4mux"),
    ("audio.mkv", "audiotestsrc num-buffers=20 ! audioconvert ! vorbisenc ! matroskamux"),
    ("zero.mkv", "videotestsrc num-buffers=0 ! video/x-raw,width=64,height=48 ! x264enc ! h264parse ! matroskamux"),
])
def test_files_without_video_frames_say_no_video_track(tmp_path, name, desc):
    from edgevos.runtime.sources import open_source

    path = tmp_path / name
    gst_write(f"{desc} ! filesink location={path}")
    with pytest.raises(SourceError) as ei:
        list(open_source(f"file://{path}"))
    msg = str(ei.value)
    assert f"no video track in {path}" in msg and "Internal" not in msg and "general stream error" not in msg, msg


@pytest.mark.gst
def test_question_mark_in_a_file_name(tmp_path, cli):
    from edgevos.runtime.sources import open_source
    from edgevos.runtime.uri import parse_sink, parse_source

    path = tmp_path / "clip?take=2.mp4"
    gst_write("videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48,framerate=30/1 ! x264enc ! h264parse "
               f"! mp4mux ! filesink location=\"{path}\"")
    for text in (f"file://{path}", str(path)):
        uri = parse_source(text)
        assert uri.path == str(path) and uri.query == {}
        assert sum(1 for _ in open_source(uri)) == 5
    assert parse_source(f"file://{tmp_path / 'x.mp4'}?decode-threads=2").query == {"decode-threads": "2"}
    for text, kind in ((f"file://{tmp_path / 'missing?take=2.mp4'}", parse_source),
                       (f"file://{tmp_path / 'out?v2.mp4'}", parse_sink)):
        with pytest.raises(InputError, match=r"'\?' starts options.*pass the path without file://"):
            kind(text)


# ---------------------------------------------------------------------------------------------
# soak: the summary covers the whole run, not the records the cap keeps
# ---------------------------------------------------------------------------------------------
def test_summary_covers_the_whole_run_past_the_record_cap():
    from edgevos.runtime.stats import FrameRecord, RunStats

    stats = RunStats(warmup=2, max_records=10)
    t = 0.0
    for i in range(100):
        t += 0.1 if i < 50 else 0.05  # the second half runs twice as fast
        stats.add(FrameRecord(i, t, 1.0, reused=(i % 4 == 0)))
    s = stats.summary()
    assert s["frames"] == 100 and s["steady_frames"] == 98 and s["window_frames"] <= 10
    t_warm = 0.1 * 3
    assert s["fps"] == pytest.approx((100 - 1 - 2) / (t - t_warm), rel=1e-3)  # not the fast recent window's 20
    assert s["reuse_rate"] == pytest.approx(sum(i % 4 == 0 for i in range(2, 100)) / 98, abs=1e-4)


def test_run_summary_past_the_cap(tmp_path):
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sources import open_source

    s = run_pipeline(open_source("test://?frames=40&size=48x64"), [], ColourSession(), warmup=4, max_records=12,
                     handle_signals=False).as_dict()
    assert s["frames"] == 40 and s["steady_frames"] == 36 and s["window_frames"] <= 12
    assert s["reuse_rate"] == pytest.approx(18 / 36)  # the double reuses every second frame
