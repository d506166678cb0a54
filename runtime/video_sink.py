"""``VideoSink``: the overlay video to a file, the display or an RTSP server (GStreamer appsrc),
encoded in a background thread; a file appears under its name only once it is complete."""
from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from edgevos.errors import InputError, SourceError
from edgevos.files import publish, umask_mode
from edgevos.runtime.overlay import draw_overlay, status_lines
from edgevos.runtime.sink_base import QueuedSink, prepare_output_dir, result_mask
from edgevos.runtime.uri import URI, redact
from edgevos.runtime.video_encoding import (
    ENCODER_ELEMENT,
    MIN_VIDEO_SIDE,
    OUTPUT_ELEMENTS,
    encoder_candidates,
    i420_bytes,
    video_sink_description,
)


class VideoSink(QueuedSink):
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
            prepare_output_dir(self._final.parent if str(self._final.parent) else Path("."), uri)
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
            mask = np.array(result_mask(result), copy=True)
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
