"""Sinks: where segmented frames go.

Every sink has ``write(frame_index, rgb, result)`` (``result`` has ``.mask``,
an (H, W) uint8 id map, and optionally ``.reused``, ``.p_gate``,
``.total_ms``, ``.stage_ms``) and ``close()``, which finalizes the output and
is idempotent; sinks are context managers.

* ``file://out.mp4`` / ``file://out.mkv``: overlay video.  ``appsrc (I420) !
  ENCODER ! h264parse ! mp4mux|matroskamux ! filesink``, ENCODER the Jetson's
  NVENC (``nvv4l2h264enc`` through ``nvvidconv``) where it exists, else x264enc,
  openh264enc or the FFmpeg encoder; an encoder that fails to start or fails on
  the first frame (an Orin Nano lists nvv4l2h264enc but has no NVENC; the failure
  can come when the caps are negotiated) falls back to the next with a warning,
  and ``?encoder=NAME`` picks one.  The file is written under a temporary
  name and renamed into place once the muxer has finished (EOS reached the
  file), so ``out.mp4`` only ever exists as a playable file.
* ``masks://DIR[?seq=NAME][&overwrite=1]``: DAVIS-layout indexed PNGs ``DIR[/NAME]/00000.png``,
  numbered by source frame.  The directory must hold no PNGs (two runs' masks never mix);
  ``overwrite=1`` deletes the masks of an earlier run first.  Each mask is written
  atomically (temp + rename) by a background thread; ``close()``
  waits until every queued mask is on disk.
* ``display://``: an on-screen window (Wayland, X11, or a Jetson's DRM sink; chosen from the environment);
  a Jetson's sinks (nv3dsink, nvdrmvideosink) get the frames in NVMM memory through ``nvvidconv``.
* ``json://stats.jsonl``: one JSON line per frame (gate decision, timings, object areas).
* ``rtsp://host:port/path``: the overlay stream pushed to an RTSP server
  (``rtspclientsink``, from gst-rtsp-server; where the plugin exists).
"""
from __future__ import annotations

import json
import os
import queue
import re
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgevos.data.masks import write_mask
from edgevos.errors import InputError, SourceError
from edgevos.files import publish, umask_mode
from edgevos.runtime.overlay import draw_overlay, status_lines
from edgevos.runtime.uri import URI, parse_sink, redact


class Sink:
    """Base class: ``write`` per frame, ``close`` once (idempotent)."""

    def __init__(self, uri: URI):
        self.uri = uri
        self.closed = False
        self.frames = 0

    def write(self, frame_index: int, rgb: np.ndarray, result) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _check_open(self) -> None:
        if self.closed:
            raise InputError(f"{self.uri}: write after close")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri})"


def _mask_of(result) -> np.ndarray:
    mask = getattr(result, "mask", result)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"result mask must be (H, W), got shape {mask.shape}")
    return mask


def _prepare_dir(path: Path, uri: URI) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SourceError(f"{uri}: cannot create output directory {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise SourceError(f"{uri}: output directory {path} is not writable: choose another location")


# ----------------------------------------------------------------------------
# GStreamer video sinks
# ----------------------------------------------------------------------------
#: encoder name (``?encoder=`` of a video sink URI) -> GStreamer chain from I420 frames to H.264
ENCODERS = {
    # Jetson NVENC (Orin NX/AGX, Xavier): into NVMM with the VIC, constant-quality-like VBR
    "nvv4l2h264enc": "nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc control-rate=0 "
                     "bitrate=8000000 iframeinterval=60 insert-sps-pps=true",
    # constant quality (CRF 21): no bitrate target to chase, and the same frames give the same file
    "x264enc": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 pass=qual quantizer=21",
    "openh264enc": "openh264enc",
    "avenc_h264": "avenc_h264",
    "avenc_h264_omx": "avenc_h264_omx",
}
HARDWARE_ENCODERS = ("nvv4l2h264enc",)
#: the smallest frame side an encoded output takes (one H.264 macroblock; x264 fails below it)
MIN_VIDEO_SIDE = 16
#: an MP4 output is written in fragments of this many milliseconds (what a crash can lose)
MP4_FRAGMENT_MS = 200
#: the name the encoder element gets in an output pipeline
ENCODER_ELEMENT = "enc"
#: the elements that write an output (an error from one of them is not the encoder's)
OUTPUT_ELEMENTS = ("filesink", "rtspclientsink")


def encoder_candidates(uri: Optional[URI] = None) -> list:
    """Encoder names to try, best first: the one asked for (``?encoder=NAME``), else the
    hardware encoder where its elements exist, then the software ones that are installed."""
    from edgevos.runtime.gstreamer import has_element

    asked = uri.query.get("encoder") if uri is not None else None
    if asked:
        if asked not in ENCODERS:
            raise InputError(f"{uri}: encoder '{asked}' is unknown: choose one of {sorted(ENCODERS)}")
        if not has_element(asked):
            raise SourceError(f"{uri}: encoder '{asked}' is not installed here")
        return [asked]
    names = [n for n in ENCODERS if has_element(n) and (n not in HARDWARE_ENCODERS or has_element("nvvidconv"))]
    if not names:
        raise SourceError(
            "no H.264 encoder found (nvv4l2h264enc, x264enc, openh264enc, avenc_h264): install "
            "gstreamer1.0-plugins-ugly (x264enc) or gstreamer1.0-plugins-bad (openh264enc)"
        )
    return names


#: Jetson video sinks that take frames in NVMM (device) memory: ``nvvidconv`` copies system
#: memory frames there (and converts the format) on the VIC
NVMM_SINKS = ("nv3dsink", "nvdrmvideosink")


def _nvmm(sink: str) -> str:
    return f"nvvidconv ! video/x-raw(memory:NVMM) ! {sink}" if sink in NVMM_SINKS else sink


def display_sink() -> str:
    """The video sink element for ``display://``, chosen from the session's display.

    GStreamer's autovideosink picks by rank, not by what is reachable: without a
    display it can pick waylandsink, which takes the whole process down.  So the
    sink is chosen here from the environment: Wayland (WAYLAND_DISPLAY), X11
    (DISPLAY), or a Jetson's DRM/EGL sinks on a console without X.
    """
    from edgevos.runtime.gstreamer import has_element

    if os.environ.get("WAYLAND_DISPLAY") and os.environ.get("XDG_RUNTIME_DIR") and has_element("waylandsink"):
        return "waylandsink sync=false"
    if os.environ.get("DISPLAY"):
        for name in ("nv3dsink", "ximagesink", "xvimagesink", "glimagesink"):  # ximagesink needs no Xv/GL
            if has_element(name) and (name not in NVMM_SINKS or has_element("nvvidconv")):
                return _nvmm(name) + " sync=false"
        raise SourceError("display://: DISPLAY is set but no X11 video sink is installed: install "
                          "gstreamer1.0-x (ximagesink, xvimagesink)")
    if has_element("nvdrmvideosink") and has_element("nvvidconv"):  # Jetson console without a window system
        return _nvmm("nvdrmvideosink") + " sync=false"
    raise SourceError(
        "display://: there is no display to show video on (neither DISPLAY nor WAYLAND_DISPLAY with "
        "XDG_RUNTIME_DIR is set): run in a desktop session or with X forwarding, or write the overlay to "
        "a file (file://out.mp4) or stream it (rtsp://server:8554/path)"
    )


def video_sink_description(uri: URI, location: Optional[str] = None, encoder: Optional[str] = None) -> str:
    """The gst-launch description (after ``appsrc name=src``) for a video sink URI, with
    ``encoder`` (a name in :data:`ENCODERS`; default: the first candidate)."""
    from edgevos.runtime.gstreamer import has_element, quote

    if uri.scheme == "display":
        return f"videoconvert ! {display_sink()}"
    name = encoder or encoder_candidates(uri)[0]
    enc = f"{ENCODERS[name]} name={ENCODER_ELEMENT}"  # the chain's last element is the encoder
    parse = " ! h264parse" if has_element("h264parse") else ""
    if not parse and name != "x264enc":
        raise SourceError(f"{uri}: encoder '{name}' needs h264parse (gstreamer1.0-plugins-bad)")
    head = f"videoconvert ! video/x-raw,format=I420 ! {enc}{parse}"
    if uri.scheme == "rtsp":
        if not has_element("rtspclientsink"):
            raise SourceError(
                f"{uri}: RTSP output needs the GStreamer element 'rtspclientsink' "
                "(gstreamer1.0-rtsp / gst-rtsp-server), which is not installed here"
            )
        return f"{head} ! rtspclientsink location={quote(uri.raw)}"
    suffix = Path(uri.path).suffix.lower()
    if suffix in (".mp4", ".mov", ".m4v"):
        # fragmented while it is written (a fragment every MP4_FRAGMENT_MS, each playable on its
        # own), so a kill or power loss keeps every finished fragment; at the end of the stream
        # the muxer rewrites the index into a normal, seekable MP4
        mux = f"mp4mux fragment-duration={MP4_FRAGMENT_MS} fragment-mode=first-moov-then-finalise"
    elif suffix == ".mkv":
        mux = "matroskamux"
    else:
        raise InputError(f"{uri}: unsupported video file extension '{suffix}': use .mp4 or .mkv")
    # unbuffered: what the muxer wrote is in the file at once, not in a 64 KiB buffer a kill -9 loses
    return f"{head} ! {mux} ! filesink buffer-mode=unbuffered location={quote(location or uri.path)}"


def i420_bytes(rgb: np.ndarray) -> bytes:
    """An RGB frame (even height and width) as an I420 buffer in GStreamer's default layout
    (each plane's rows padded to 4 bytes)."""
    import cv2

    h, w = rgb.shape[:2]
    flat = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420).reshape(-1)  # Y, U, V planes, packed
    sy, sc = (w + 3) & ~3, (w // 2 + 3) & ~3
    if sy == w and sc == w // 2:
        return flat.tobytes()
    out = np.zeros(sy * h + 2 * sc * (h // 2), np.uint8)
    y, c = h * w, (h // 2) * (w // 2)
    out[:sy * h].reshape(h, sy)[:, :w] = flat[:y].reshape(h, w)
    for k in range(2):
        start = sy * h + k * sc * (h // 2)
        out[start:start + sc * (h // 2)].reshape(h // 2, sc)[:, :w // 2] = flat[y + k * c:y + (k + 1) * c].reshape(h // 2, w // 2)
    return out.tobytes()


class _QueuedSink(Sink):
    """A sink whose work runs in one background thread fed by ``self._queue``
    (None ends it).  The first error stops the work for good (``self._failed``) and
    is kept in ``self._error`` for the next write or close to raise."""

    #: the first error; once set no further item is handled, even after it was raised
    _failed: Optional[BaseException] = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._failed is None:
                    self._handle(item)
            except BaseException as exc:  # reported on the next write/close
                self._error = self._failed = exc
            finally:
                self._queue.task_done()

    def _handle(self, item) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class VideoSink(_QueuedSink):
    """Overlay video to a file, the display or an RTSP server (GStreamer appsrc).

    The pipeline starts on the first ``write`` (it needs the frame size).  Frames
    with odd width/height are padded by one pixel (H.264 4:2:0 needs even sizes).
    """

    def __init__(self, uri: URI, fps: Optional[float] = None, overlay: bool = True,
                 alpha: float = 0.5, eos_timeout: float = 30.0):
        super().__init__(uri)
        from edgevos.runtime.gstreamer import gst

        gst()
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.overlay = overlay
        self.alpha = alpha
        # a network push has nothing to finalize on our side: every frame was handed to
        # rtspclientsink long before close(), and some servers never acknowledge the end of
        # the RECORD session, so its EOS may not come back.  Wait briefly and only warn.
        self.eos_required = uri.scheme != "rtsp"
        self.eos_timeout = eos_timeout if self.eos_required else min(eos_timeout, 5.0)
        # how long the first frame may take through an encoder that has a fallback
        self.first_buffer_timeout = 5.0
        self._pipeline = None
        self._src = None
        self._size = None  # (H, W) of the frames written
        self._tmp: Optional[Path] = None
        self._final: Optional[Path] = None
        self._t_last = None
        self._rate = None
        self._pushed = 0
        self._first_index: Optional[int] = None  # the first frame's number: time 0
        self._next_slot = 0  # the earliest frame slot the next buffer may take
        self.encoder: Optional[str] = None  # the encoder that started (see encoder_candidates)
        self._queue: "queue.Queue" = queue.Queue(maxsize=4)
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        if uri.scheme == "file":
            self._final = Path(uri.path)
            _prepare_dir(self._final.parent if str(self._final.parent) else Path("."), uri)
        video_sink_description(uri, "x")  # validate elements / extension now, not on frame 1

    def _start(self, h: int, w: int, first=None) -> None:
        """Start the output pipeline; with ``first`` (the first frame's I420 bytes) an encoder
        that has a fallback is tried on that frame, which is then pushed (``_pushed`` 1)."""
        from edgevos.runtime.gstreamer import gst

        Gst = gst()
        location = None
        if self._final is not None:
            # a visible name with the video's extension: after a crash it plays as it is
            fd, tmp = tempfile.mkstemp(prefix=f"{self._final.stem}.partial-", suffix=self._final.suffix,
                                       dir=self._final.parent if str(self._final.parent) else ".")
            os.close(fd)
            self._tmp = Path(tmp)
            location = tmp
        num, den = _fraction(self.fps)
        # frames arrive as I420, converted by OpenCV in the writer thread (~0.1 ms at 480p against
        # ~1 ms for videoconvert's RGB -> I420); videoconvert then passes them through to the encoder
        caps = f"video/x-raw,format=I420,width={w},height={h},framerate={num}/{den}"
        # not block=true: a push into a pipeline that failed (a full disk) would wait forever on a
        # queue nothing drains any more; _wait_for_room holds frames back and watches the bus instead
        self._max_bytes = 4 * w * h * 3
        head = (f"appsrc name=src format=time is-live=false block=false do-timestamp=false "
                f"max-bytes={self._max_bytes} caps={caps} ! ")
        names = [None] if self.uri.scheme == "display" else encoder_candidates(self.uri)
        failures = []
        for k, name in enumerate(names):  # a listed hardware encoder can still fail to open (an Orin Nano has no NVENC)
            err = self._try_start(Gst, head + video_sink_description(self.uri, location, name))
            if err is None and first is not None and k + 1 < len(names):
                # an encoder may only fail when caps are negotiated or on its first frame: try that
                # frame here while another encoder can still take over
                err = self._try_first_buffer(Gst, first)
            if err is not None and any(f"from element '{e}" in err for e in OUTPUT_ELEMENTS):
                # the output itself refused, not the encoder: another encoder would meet the same refusal
                hint = ("is the RTSP server running and reachable at that address?" if self.uri.scheme == "rtsp"
                        else "check that the location can be written")
                raise SourceError(f"{self.uri}: cannot start the output: {err}; {hint}")
            if err is None:
                self.encoder = name
                if failures:
                    warnings.warn(f"{self.uri}: {'; '.join(failures)}; encoding with {name}", RuntimeWarning,
                                  stacklevel=2)
                self._size = (h, w)
                return
            failures.append(f"{name or 'the display sink'} did not start ({err})")
        raise SourceError(f"{self.uri}: cannot start the output: {'; '.join(failures)}")

    def _try_start(self, Gst, desc: str) -> Optional[str]:
        """Build and start one output pipeline; None when it runs, else the reason."""
        try:
            pipeline = Gst.parse_launch(desc)
        except Exception as exc:
            return redact(str(exc))
        self._pipeline = pipeline
        self._src = pipeline.get_by_name("src")
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            err = self._bus_error(0.5)
            pipeline.set_state(Gst.State.NULL)
            self._pipeline = self._src = None
            return err or "state change failed"
        return None

    def _buffer(self, Gst, data: bytes, frame_index: Optional[int] = None):
        """A frame's buffer, timed by its source frame number at the rate (a frame the source
        lost leaves a gap in time, so the video keeps the source's timing), never before the
        previous one."""
        buf = Gst.Buffer.new_wrapped(data)
        dur = int(Gst.SECOND / self.fps)
        slot = self._pushed if frame_index is None or self._first_index is None else frame_index - self._first_index
        slot = max(slot, self._next_slot)
        self._next_slot = slot + 1
        buf.pts = slot * dur
        buf.duration = dur
        return buf

    def _try_first_buffer(self, Gst, data: bytes, timeout_s: Optional[float] = None) -> Optional[str]:
        """Push the first frame into a started pipeline and wait until the encoder put out a
        buffer (it works), an error came (None is returned with the pipeline stopped, else the
        reason) or ``timeout_s`` passed without either (taken as working: some encoders hold
        frames back)."""
        timeout_s = self.first_buffer_timeout if timeout_s is None else timeout_s
        done = threading.Event()
        enc = self._pipeline.get_by_name(ENCODER_ELEMENT)
        pad = enc.get_static_pad("src") if enc is not None else None
        if pad is not None:
            pad.add_probe(Gst.PadProbeType.BUFFER, lambda *_: (done.set(), Gst.PadProbeReturn.REMOVE)[1])
        ret = self._src.push_buffer(self._buffer(Gst, data))
        err = None if ret == Gst.FlowReturn.OK else f"first frame refused ({ret.value_nick})"
        t_end = time.perf_counter() + timeout_s
        while err is None and not done.is_set() and time.perf_counter() < t_end:
            err = self._bus_error(0.05)
        err = err or self._bus_error()
        if err is not None:
            self._pipeline.set_state(Gst.State.NULL)
            self._pipeline = self._src = None
            self._next_slot = 0  # the next encoder starts at time 0 again
            return err
        self._pushed = 1
        return None

    def _bus_error(self, timeout_s: float = 0.0) -> Optional[str]:
        from edgevos.runtime.gstreamer import gst

        Gst = gst()
        if self._pipeline is None:
            return None
        msg = self._pipeline.get_bus().timed_pop_filtered(int(timeout_s * Gst.SECOND), Gst.MessageType.ERROR)
        if msg is None:
            return None
        err, _ = msg.parse_error()
        return redact(f"{err.message} (from element '{msg.src.get_name() if msg.src else '?'}')")

    def write(self, frame_index: int, rgb: np.ndarray, result) -> None:
        """Validate and queue a frame; overlay drawing and encoding run in a worker
        thread (overlapped with the next inference step).  Errors from earlier
        frames are raised here."""
        self._check_open()
        self._raise_error()
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError(f"{self.uri}: frames must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        if min(h, w) < MIN_VIDEO_SIDE and self.uri.scheme != "display":
            raise InputError(f"{self.uri}: frames of {w}x{h} are too small to encode (H.264 needs at least "
                             f"{MIN_VIDEO_SIDE}x{MIN_VIDEO_SIDE}): resize the source, or write masks:// / json:// only")
        size = (h + (h & 1), w + (w & 1))
        if self._size is None:
            self._size = size
        elif self._size != size:
            raise SourceError(
                f"{self.uri}: frame size changed from {self._size[1]}x{self._size[0]} to {size[1]}x{size[0]}; "
                "a video output keeps the first frame's size"
            )
        now = time.perf_counter()
        if self._t_last is not None:
            inst = 1.0 / max(now - self._t_last, 1e-6)
            self._rate = inst if self._rate is None else 0.9 * self._rate + 0.1 * inst
        self._t_last = now
        mask = lines = None
        if self.overlay and result is not None:
            mask = np.array(_mask_of(result), copy=True)
            if mask.shape != (h, w):
                raise InputError(f"{self.uri}: mask is {mask.shape[1]}x{mask.shape[0]} but frame is {w}x{h}")
            lines = status_lines(result, self._rate)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edgevos-video", daemon=True)
            self._thread.start()
        self._queue.put((int(frame_index), rgb, mask, lines))
        self.frames += 1

    def _handle(self, item) -> None:
        self._encode(*item)

    def _raise_error(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            if isinstance(exc, (SourceError, InputError)):
                raise exc
            raise SourceError(f"{self.uri}: writing the video failed: {exc}") from exc

    def _encode(self, frame_index: int, rgb: np.ndarray, mask, lines) -> None:
        from edgevos.runtime.gstreamer import gst

        Gst = gst()
        img = rgb if mask is None else draw_overlay(rgb, mask, alpha=self.alpha, lines=lines or ())
        h, w = img.shape[:2]
        h2, w2 = self._size
        if (h2, w2) != (h, w):
            img = np.pad(img, ((0, h2 - h), (0, w2 - w), (0, 0)), mode="edge")
        data = i420_bytes(img)
        if self._first_index is None:
            self._first_index = frame_index
        if self._pipeline is None:
            self._start(h2, w2, data if self._pushed == 0 else None)
            if self._pushed:  # the first frame went in while the encoder was tried
                return
        self._wait_for_room(frame_index)
        ret = self._src.push_buffer(self._buffer(Gst, data, frame_index))
        if ret != Gst.FlowReturn.OK:
            err = self._bus_error(0.2)
            raise SourceError(f"{self.uri}: output refused frame {frame_index}: {err or ret.value_nick}")
        err = self._bus_error()
        if err:
            raise SourceError(f"{self.uri}: output failed at frame {frame_index}: {err}")
        self._pushed += 1

    def _wait_for_room(self, frame_index: int) -> None:
        """Wait while the output's queue is full, raising the pipeline's error if one comes."""
        while self._src.get_property("current-level-bytes") >= self._max_bytes:
            err = self._bus_error(0.005)
            if err:
                raise SourceError(f"{self.uri}: output failed at frame {frame_index}: {err}")

    def __del__(self):
        try:
            if self._pipeline is not None:
                from edgevos.runtime.gstreamer import gst

                self._pipeline.set_state(gst().State.NULL)
        except Exception:
            pass

    def close(self) -> None:
        """Send EOS, wait until it reached the file (the muxer wrote its index), rename into place."""
        if self.closed:
            return
        self.closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        pending = self._error
        self._error = None
        if self._pipeline is None:
            self.frames = 0  # nothing was started, so nothing was written
            if pending is not None:
                raise SourceError(f"{self.uri}: writing the video failed: {pending}") from pending
            return
        from edgevos.runtime.gstreamer import gst

        Gst = gst()
        err = None
        # a failure write() already raised still leaves a file incomplete: finalizing it would
        # rewrite the head of a file whose tail cannot be written (a full disk)
        failed = pending if pending is not None or self._tmp is None else self._failed
        try:
            if failed is not None and self._tmp is not None:
                # writing already failed (a full disk): finalizing would rewrite the file's head
                # and then fail on its tail; the fragments written so far stay playable as they are
                raise _KeepPartial()
            self._src.end_of_stream()
            bus = self._pipeline.get_bus()
            msg = bus.timed_pop_filtered(int(self.eos_timeout * Gst.SECOND),
                                         Gst.MessageType.EOS | Gst.MessageType.ERROR)
            if msg is None and not self.eos_required:
                import warnings

                warnings.warn(f"{self.uri}: the receiver did not acknowledge the end of the stream within "
                              f"{self.eos_timeout:.0f} s; {self._pushed} frames were sent", RuntimeWarning)
            elif msg is None:
                err = f"end of stream not reached within {self.eos_timeout:.0f} s"
            elif msg.type == Gst.MessageType.ERROR:
                e, _ = msg.parse_error()
                err = redact(e.message)
        except _KeepPartial:
            pass
        finally:
            self._pipeline.set_state(Gst.State.NULL)
            self._pipeline.get_state(5 * Gst.SECOND)
            self._pipeline = self._src = None
        if failed is not None and err is None:
            err = f"a frame failed before the end: {failed}"
        # ``frames`` tells what reached the output: every frame pushed once it is finalized, else none
        self.frames = self._pushed if err is None else 0
        if self._tmp is not None:
            if err is None:
                publish(self._tmp, self._final, mode=umask_mode())
            else:
                raise SourceError(f"{self.uri}: could not finalize the video ({err}); "
                                  f"partial data left in {self._tmp}")
        elif err is not None:
            raise SourceError(f"{self.uri}: could not finalize the output ({err})")


class _KeepPartial(Exception):
    """Leave a video output unfinalized: its partial file is kept as written."""


def _fraction(fps: float):
    from fractions import Fraction

    f = Fraction(fps).limit_denominator(1001)
    return f.numerator, f.denominator


# ----------------------------------------------------------------------------
# masks and JSON
# ----------------------------------------------------------------------------
_MASK_NAME = re.compile(r"^(\d{5,}\.png|\.\d{5,}\.png\..*\.tmp)$")  # a mask, or one being written


def _claim_mask_dir(path: Path, uri: URI, overwrite: bool) -> None:
    """A masks directory must hold no PNGs, so one run's masks never mix with another's (other
    files, such as this run's video or JSON, may share it); with ``overwrite`` the masks of an
    earlier run (``NNNNN.png``) are deleted first."""
    def pngs():
        try:
            return sorted(n for n in os.listdir(path) if n.lower().endswith((".png", ".tmp")))
        except OSError as exc:
            raise SourceError(f"{uri}: cannot list output directory {path}: {exc.strerror}") from exc

    found = pngs()
    if found and overwrite:
        for name in found:
            if _MASK_NAME.match(name):
                try:
                    (path / name).unlink()
                except OSError as exc:
                    raise SourceError(f"{uri}: cannot delete the old mask {path / name}: {exc.strerror}") from exc
        found = pngs()
        if found:
            raise InputError(f"{uri}: output directory {path} holds PNGs that are not masks (e.g. '{found[0]}'): "
                             "choose a new directory")
    if found:
        raise InputError(
            f"{uri}: output directory {path} already holds masks ({len(found)} files, e.g. '{found[0]}'): two "
            "runs' masks would mix; choose a new directory, or add ?overwrite=1 to delete them first")


class MaskSink(_QueuedSink):
    """DAVIS-layout indexed PNGs, written atomically by one background thread."""

    def __init__(self, uri: URI, queue_size: int = 16):
        super().__init__(uri)
        self.dir = Path(uri.path)
        if uri.query.get("seq"):
            self.dir = self.dir / uri.query["seq"]
        unknown = set(uri.query) - {"seq", "overwrite"}
        if unknown:
            raise InputError(f"{uri}: unknown option(s) {sorted(unknown)}; known: seq, overwrite")
        overwrite = uri.query.get("overwrite", "0").strip().lower()
        if overwrite not in ("0", "1", "true", "false", "yes", "no"):
            raise InputError(f"{uri}: overwrite={uri.query['overwrite']!r} must be 1 or 0")
        _prepare_dir(self.dir, uri)
        _claim_mask_dir(self.dir, uri, overwrite in ("1", "true", "yes"))
        self._write_mask = write_mask
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_size)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="edgevos-masks", daemon=True)
        self._thread.start()
        self.written = 0

    def path_for(self, frame_index: int) -> Path:
        return self.dir / f"{int(frame_index):05d}.png"

    def _handle(self, item) -> None:
        self._write_mask(self.path_for(item[0]), item[1])
        self.written += 1

    def _raise_error(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SourceError(f"{self.uri}: writing masks to {self.dir} failed: {reason}") from exc

    def write(self, frame_index: int, rgb, result) -> None:
        self._check_open()
        self._raise_error()
        mask = _mask_of(result)
        if mask.dtype != np.uint8:
            if not np.issubdtype(mask.dtype, np.integer) or mask.min() < 0 or mask.max() > 255:
                raise InputError(f"{self.uri}: mask must hold ids 0..255, got dtype {mask.dtype}")
            mask = mask.astype(np.uint8)
        self._queue.put((int(frame_index), np.array(mask, copy=True)))
        self.frames += 1

    def flush(self) -> None:
        """Block until every queued mask is on disk."""
        self._queue.join()
        self._raise_error()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.put(None)
        self._thread.join()
        self.frames = self.written  # what is on disk, not what was queued
        self._raise_error()


class JsonSink(Sink):
    """One JSON object per line and frame: gate decision, timings, object areas."""

    def __init__(self, uri: URI):
        super().__init__(uri)
        self.path = Path(uri.path)
        _prepare_dir(self.path.parent if str(self.path.parent) else Path("."), uri)
        try:
            self._fh = open(self.path, "w", buffering=1)
        except OSError as exc:
            raise SourceError(f"{uri}: cannot write {self.path}: {exc.strerror}") from exc

    def write(self, frame_index: int, rgb, result) -> None:
        self._check_open()
        mask = _mask_of(result)
        counts = np.bincount(mask.reshape(-1), minlength=256) if mask.dtype == np.uint8 else None
        if counts is None:
            ids, counts = np.unique(mask, return_counts=True)
        else:
            ids = np.flatnonzero(counts)
            counts = counts[ids]
        rec = {
            "frame": int(frame_index),
            "reused": getattr(result, "reused", None),
            "p_gate": _num(getattr(result, "p_gate", None)),
            "total_ms": _num(getattr(result, "total_ms", None)),
            "stage_ms": {k: _num(v) for k, v in (getattr(result, "stage_ms", None) or {}).items()},
            "object_pixels": {str(int(i)): int(c) for i, c in zip(ids, counts) if 0 < i < 255},
        }
        try:
            self._fh.write(json.dumps(rec) + "\n")
        except OSError as exc:
            raise SourceError(f"{self.uri}: cannot write {self.path}: {exc.strerror}") from exc
        self.frames += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._fh.close()


def _num(v):
    if v is None:
        return None
    return round(float(v), 4)


def open_sink(uri: Union[str, URI], *, fps: Optional[float] = None, **options) -> Sink:
    """Open a sink URI (see the module docstring)."""
    u = uri if isinstance(uri, URI) else parse_sink(uri)
    if u.scheme == "masks":
        return MaskSink(u, **options)
    if u.scheme == "json":
        return JsonSink(u)
    return VideoSink(u, fps=fps, **options)
