"""Outputs: a user's input is never overwritten, runs never mix, what was written is never
lost, and every output location is checked before the first frame.

The session is the colour double of tests/test_run_cli.py: these tests are about files,
signals and numbering, not about the model.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_common import gst_or_skip, gst_write  # noqa: E402
from test_run_cli import ColourSession  # noqa: E402

pytestmark = pytest.mark.gst


def _video(path: Path, frames: int = 12, pattern: str = "ball") -> Path:
    gst_write(f"videotestsrc pattern={pattern} num-buffers={frames} ! video/x-raw,width=160,height=96,framerate=30/1 "
               f"! x264enc ! h264parse ! mp4mux ! filesink location={path}")
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cli(monkeypatch):
    """``edgevos run`` with the session double; returns (exit code, stdout + stderr)."""
    import edgevos.runtime.session as session_mod
    from edgevos.cli import main

    monkeypatch.setattr(session_mod.Session, "from_bundle", classmethod(lambda cls, *a, **k: ColourSession()))

    def go(*argv, capsys=None):
        return main(["run", *map(str, argv), "--bundle", ".", "--quiet", "--no-power"])

    return go


# ---------------------------------------------------------------------------------------------
# 1. an output equal to the input, or to another output, is refused before anything is opened
# ---------------------------------------------------------------------------------------------
def test_output_that_is_the_input_is_refused_and_the_input_survives(cli, tmp_path, capsys, monkeypatch):
    clip = _video(tmp_path / "a.mp4")
    before = _digest(clip)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.mp4").symlink_to(clip)
    monkeypatch.chdir(tmp_path)
    box = ["--init-box", "40,20,40,40", "--max-frames", "3"]
    for argv in (["file://a.mp4", "file://a.mp4"], ["a.mp4", "a.mp4"], ["file://a.mp4", "json://a.mp4"],
                 ["file://a.mp4", "file://sub/../a.mp4"], ["file://a.mp4", f"json://{tmp_path / 'link.mp4'}"],
                 ["file://a.mp4", "masks://m", "--log", "a.mp4"]):
        assert cli(*argv, *box) == 1, argv
        err = capsys.readouterr().err
        assert "is the input" in err and "Traceback" not in err, (argv, err)
        assert _digest(clip) == before, argv
    assert not (tmp_path / "m").exists()  # nothing was opened


def test_two_outputs_on_one_path_are_refused(cli, tmp_path, capsys, monkeypatch):
    clip = _video(tmp_path / "a.mp4")
    monkeypatch.chdir(tmp_path)
    box = ["--init-box", "40,20,40,40", "--max-frames", "3"]
    for argv in (["file://out.mp4", "json://out.mp4"], ["json://s.jsonl", "json://./s.jsonl"],
                 ["masks://m", "masks://m/"], ["json://s.jsonl", "--log", "s.jsonl"]):
        assert cli(f"file://{clip}", *argv, *box) == 1, argv
        err = capsys.readouterr().err
        assert "are the same path" in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_output_inside_a_davis_dataset_is_refused(davis_root, tmp_path):
    from edgevos import run
    from edgevos.errors import InputError

    with pytest.raises(InputError, match="inside the dataset"):
        run(f"davis://{davis_root}?seq=bear", [f"masks://{davis_root}/Annotations/480p/bear"], session=ColourSession())


# ---------------------------------------------------------------------------------------------
# 3. a reused masks:// directory never mixes two runs
# ---------------------------------------------------------------------------------------------
def test_reused_masks_directory_is_refused_unless_overwrite(cli, tmp_path, capsys):
    masks = tmp_path / "m"
    assert cli("test://?frames=12&size=48x64", f"masks://{masks}", f"json://{masks / 's.jsonl'}") == 0
    assert len(list(masks.glob("*.png"))) == 12
    capsys.readouterr()
    assert cli("test://?frames=5&size=48x64", f"masks://{masks}") == 1
    err = capsys.readouterr().err
    assert "already holds masks" in err and "?overwrite=1" in err and "Traceback" not in err
    assert len(list(masks.glob("*.png"))) == 12  # untouched
    assert cli("test://?frames=5&size=48x64", f"masks://{masks}?overwrite=1") == 0
    assert sorted(p.name for p in masks.glob("*.png")) == [f"{i:05d}.png" for i in range(5)]
    assert (masks / "s.jsonl").is_file()  # only masks are deleted
    (masks / "photo.png").write_bytes(b"x")
    assert cli("test://?frames=5&size=48x64", f"masks://{masks}?overwrite=1") == 1
    assert "not masks" in capsys.readouterr().err and (masks / "photo.png").exists()
    assert cli("test://?frames=5&size=48x64", f"masks://{tmp_path / 'n'}?overwrite=maybe") == 1
    assert "overwrite='maybe' must be 1 or 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 4. complete files are not taken for truncated ones; truncated ones still are
# ---------------------------------------------------------------------------------------------
def _decode(path: Path) -> int:
    from edgevos.runtime.sources import open_source

    return sum(1 for _ in open_source(f"file://{path}"))


def test_complete_files_with_odd_durations_are_accepted(tmp_path):
    """An MP4 whose audio outlasts its video (phones), and a raw H.264 stream whose first
    frames are small (the duration GStreamer estimates from the bitrate is far too long)."""
    gst_or_skip()
    from edgevos.runtime.sources import has_element

    raw = "video/x-raw,width=160,height=96,framerate=30/1 ! x264enc key-int-max=30 ! h264parse"
    if has_element("avenc_aac"):
        av = tmp_path / "av.mp4"
        gst_write(f"videotestsrc num-buffers=30 ! {raw} ! queue ! mp4mux name=m ! filesink location={av} "
                   "audiotestsrc num-buffers=130 samplesperbuffer=1024 ! audioconvert ! avenc_aac ! queue ! m.")
        assert _decode(av) == 30  # 1 s of video, 3 s of audio
    parts = []
    for name, pattern, n in (("flat", "black", 60), ("busy", "snow", 30)):
        parts.append(tmp_path / f"{name}.h264")
        gst_write(f"videotestsrc pattern={pattern} num-buffers={n} ! {raw} ! video/x-h264,stream-format=byte-stream "
                   f"! filesink location={parts[-1]}")
    stream = tmp_path / "clip.h264"
    stream.write_bytes(b"".join(p.read_bytes() for p in parts))
    assert _decode(stream) == 90


@pytest.mark.parametrize("mux", ["mp4mux faststart=true", "matroskamux"])
def test_truncated_files_are_still_named(tmp_path, mux):
    from edgevos.errors import SourceError

    gst_or_skip()
    whole = tmp_path / "whole"
    gst_write(f"videotestsrc pattern=snow num-buffers=90 ! video/x-raw,width=160,height=96,framerate=30/1 ! "
               f"x264enc ! h264parse ! {mux} ! filesink location={whole}")
    cut = tmp_path / ("cut.mp4" if "mp4" in mux else "cut.mkv")
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    with pytest.raises(SourceError, match="file is truncated"):
        _decode(cut)


# ---------------------------------------------------------------------------------------------
# 5. frames a file's decoder drops leave gaps; they never shift later outputs
# ---------------------------------------------------------------------------------------------
def _video_with_gap(path: Path, frames: int = 30, gap=range(10, 20)) -> Path:
    """An MP4 whose frames ``gap`` are missing (their time is empty), as a decoder that
    drops damaged frames delivers them."""
    Gst = gst_or_skip()
    pipeline = Gst.parse_launch(f"videotestsrc name=src pattern=ball num-buffers={frames} ! "
                                "video/x-raw,width=160,height=96,framerate=30/1 ! x264enc ! h264parse ! mp4mux ! "
                                f"filesink location={path}")
    seen = [0]

    def drop(_pad, _info):
        seen[0] += 1
        return Gst.PadProbeReturn.DROP if seen[0] - 1 in gap else Gst.PadProbeReturn.OK

    pipeline.get_by_name("src").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, drop)
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert msg is not None and msg.type == Gst.MessageType.EOS
    return path


def test_dropped_frames_keep_the_source_numbering(cli, tmp_path, capsys):
    from edgevos.runtime.sources import open_source

    clip = _video_with_gap(tmp_path / "gap.mp4")
    masks, out, log = tmp_path / "m", tmp_path / "o.mp4", tmp_path / "log.json"
    with pytest.warns(RuntimeWarning, match="10 frame.s. could not be decoded"):
        code = cli(f"file://{clip}", f"masks://{masks}", f"json://{tmp_path / 's.jsonl'}", f"file://{out}",
                   "--init-box", "40,20,40,40", "--log", log, "--warmup", "2")
    assert code == 0
    want = [*range(10), *range(20, 30)]
    assert sorted(int(p.stem) for p in masks.glob("*.png")) == want
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == want
    summary = json.loads(log.read_text())["summary"]
    assert summary["dropped"] == 10 and summary["frames"] == 20
    assert "lost 10 frame(s)" in capsys.readouterr().err
    assert [f.index for f in open_source(f"file://{out}")] == want  # the overlay keeps the source's timing


def test_damaged_real_video_numbers_frames_by_source_time(videos_dir, tmp_path):
    """A corrupt stretch of a real clip's mdat: the decoder drops frames and repeats a time;
    every frame still gets the number of its time, and delivered + dropped = the clip's frames."""
    gst_or_skip()
    from edgevos.runtime.sources import open_source

    src = videos_dir / "cutie_example.mp4"  # 117 frames at 25 fps
    data = bytearray(src.read_bytes())
    start = len(data) // 3
    data[start: start + 60000] = bytes(60000)
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    source = open_source(f"file://{tmp_path / 'bad.mp4'}")
    with pytest.warns(RuntimeWarning, match="could not be decoded"):
        frames = list(source)
    assert source.dropped > 0 and len(frames) + source.dropped == 117
    assert frames[-1].index == 116
    t0 = frames[0].pts
    assert all(f.index == round((f.pts - t0) * 25) for f in frames)


# ---------------------------------------------------------------------------------------------
# 6. every output location is checked before the first frame (or the first calibration step)
# ---------------------------------------------------------------------------------------------
def test_unwritable_log_is_refused_before_the_first_frame(cli, tmp_path, capsys):
    (tmp_path / "f").write_text("a file")
    (tmp_path / "d").mkdir()
    for log, words in ((tmp_path / "f" / "log.json", "is a file"), (tmp_path / "d", "is a directory")):
        assert cli("test://?frames=5&size=48x64", f"masks://{tmp_path / 'm'}", "--log", log) == 1
        err = capsys.readouterr().err
        assert "--log" in err and words in err and "Traceback" not in err, err
        assert not (tmp_path / "m").exists()  # refused before anything was opened
    from test_reliability_inputs import _mount_tmpfs, _umount

    ro = tmp_path / "ro"
    if _mount_tmpfs(ro, "ro,size=64k"):  # root ignores permission bits; a read-only mount refuses
        try:
            assert cli("test://?frames=5&size=48x64", f"masks://{tmp_path / 'm'}", "--log", ro / "log.json") == 1
            err = capsys.readouterr().err
            assert "not writable" in err and str(ro) in err and not (tmp_path / "m").exists(), err
        finally:
            _umount(ro)


def test_export_and_import_weights_check_out_before_working(tmp_path, capsys, monkeypatch):
    import edgevos.export.exporter as exporter
    import edgevos.models.upstream as upstream
    from edgevos.cli import main

    def never(*a, **k):
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr(exporter, "_export", never)
    monkeypatch.setattr(exporter, "_export_spawned", never)
    monkeypatch.setattr(upstream, "import_upstream", never)
    (tmp_path / "f").write_text("a file")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for out, words in ((tmp_path / "f" / "bundle", "is a file"), (tmp_path / "f", "is a file, not a directory"),
                       (tmp_path / "full", "is not empty")):
        assert main(["export", "--family", "gfrtm", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "--out" in err and words in err and "Traceback" not in err, err
    (tmp_path / "src.pth").write_bytes(b"x")
    for out, words in ((tmp_path / "f" / "w.pt", "is a file"), (tmp_path / "full", "is a directory")):
        assert main(["import-weights", str(tmp_path / "src.pth"), "--no-backbone", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "--out" in err and words in err and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------
# 7. what is reported written is what is on disk; encoder limits are checked on the first frame
# ---------------------------------------------------------------------------------------------
def test_frames_too_small_to_encode_are_refused_at_once(tmp_path):
    import time

    from edgevos.errors import InputError
    from edgevos.runtime.sinks import open_sink

    gst_or_skip()
    sink = open_sink(f"file://{tmp_path / 'o.mp4'}", fps=30)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="8x8 are too small to encode.*at least 16x16"):
        sink.write(0, np.zeros((8, 8, 3), np.uint8), None)
    sink.close()
    assert time.perf_counter() - t0 < 2 and sink.frames == 0 and not list(tmp_path.iterdir())


def test_reported_frames_are_the_frames_on_disk(cli, tmp_path, capsys):
    assert cli("test://?frames=9&size=48x64", f"masks://{tmp_path / 'm'}", f"file://{tmp_path / 'o.mkv'}",
               f"json://{tmp_path / 's.jsonl'}", "--max-frames", "7") == 0
    out = capsys.readouterr().out
    for name in ("m", "o.mkv", "s.jsonl"):
        assert f"{tmp_path / name} (7 frames)" in out, out


# ---------------------------------------------------------------------------------------------
# 9. numbers are range-checked where they come in
# ---------------------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

OUT_OF_RANGE = {
    "--threads": st.one_of(st.integers(max_value=0), st.integers(min_value=257)),
    "--max-reuse": st.integers(max_value=-1),
    "--max-frames": st.integers(max_value=0),
    "--warmup": st.integers(max_value=-1),
    "--reconnect": st.integers(max_value=-1),
    "--timeout": st.one_of(st.floats(max_value=0.0), st.just(float("inf")), st.just(float("nan"))),
    "--tau": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0000001), st.just(float("nan"))),
    "--target-fps": st.one_of(st.floats(max_value=0.0), st.just(float("inf"))),
}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(OUT_OF_RANGE)).flatmap(lambda f: st.tuples(st.just(f), OUT_OF_RANGE[f])))
def test_out_of_range_numbers_are_refused_by_name(flag_value):
    import contextlib
    import io

    from edgevos.cli import main

    flag, value = flag_value
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as ei:
        main(["run", "test://", "--bundle", ".", f"{flag}={value}"])
    assert ei.value.code == 2
    assert f"argument {flag}" in err.getvalue() and "Traceback" not in err.getvalue()


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.text(max_size=4), st.booleans(), st.floats(), st.integers(), st.none()))
def test_session_tau_and_max_reuse_take_only_numbers_in_range(value):
    from types import SimpleNamespace

    from edgevos.errors import InputError
    from edgevos.runtime.session import Session

    session = Session(lambda tau, max_reuse: SimpleNamespace(tau=tau, max_reuse=max_reuse, backend=None))
    tau_ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    reuse_ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
    for name, ok in (("tau", tau_ok), ("max_reuse", reuse_ok)):
        if ok:
            setattr(session, name, value)
            assert getattr(session, name) == value
        else:
            with pytest.raises(InputError, match=name):
                setattr(session, name, value)


def test_test_source_rate_must_be_positive():
    from edgevos.errors import InputError
    from edgevos.runtime.sources import open_source

    for fps in ("0", "-5", "inf", "nan"):
        with pytest.raises(InputError, match=f"fps={fps} must be a positive rate"):
            open_source(f"test://?frames=2&size=32x32&fps={fps}")
