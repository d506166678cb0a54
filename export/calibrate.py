"""Calibration data from the step program itself.

:class:`RecordingBackend` wraps any Backend and keeps (a uniform reservoir sample
of) the feeds each stage really receives while a step program runs, so decoder
and gate stages are calibrated on the tensors they will see in deployment, not
on random inputs.  :func:`collect_calibration` drives a program over calibration
sequences with a progress bar and returns the samples plus a summary for the
manifest.  Sequences are anything with ``name``, ``len()``, ``frame(i)`` (RGB
uint8 HxWx3) and ``mask(i)`` (uint8 object ids), like ``edgevos.data``'s.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from edgevos.errors import DataError, InputError
from edgevos.backend import Backend


class RecordingBackend(Backend):
    """A Backend that forwards to ``inner`` and records copies of the feeds per stage.

    At most ``max_samples_per_stage`` feeds are kept per stage, chosen by
    reservoir sampling (uniform over all calls, reproducible with ``seed``).
    """

    name = "recording"

    def __init__(self, inner: Backend, max_samples_per_stage: Optional[int] = 64, seed: int = 0):
        super().__init__(inner.specs.values())
        self.inner = inner
        self.name = f"recording({inner.name})"
        self.max_samples = max_samples_per_stage
        self.samples: Dict[str, List[Dict[str, np.ndarray]]] = {s: [] for s in self.specs}
        self.calls: Dict[str, int] = {s: 0 for s in self.specs}
        self._rng = np.random.default_rng(seed)

    def _run(self, spec, feeds):
        name = spec.name
        self.calls[name] += 1
        keep = self.samples[name]
        copy = None
        if self.max_samples is None or len(keep) < self.max_samples:
            copy = {n: np.array(feeds[n], copy=True) for n in spec.input_names}
            keep.append(copy)
        else:
            j = int(self._rng.integers(0, self.calls[name]))
            if j < self.max_samples:
                keep[j] = {n: np.array(feeds[n], copy=True) for n in spec.input_names}
        out = self.inner.run(name, feeds)
        self.last_ms[name] = self.inner.last_ms.get(name, 0.0)
        return out


class CalibrationSet:
    """Recorded feeds per stage plus the summary that goes into the manifest."""

    def __init__(self, samples: Dict[str, List[Dict[str, np.ndarray]]], summary: dict):
        self.samples = samples
        self.summary = summary

    def reader(self, spec):
        from edgevos.export.quantize import make_reader

        return make_reader(spec, self.samples.get(spec.name, []))


def _resize(frame, mask, size):
    if size is None:
        return frame, mask
    import cv2

    h, w = size
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    if mask is not None and mask.shape[:2] != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return frame, mask


def run_program(program, sequence, max_frames: Optional[int] = None, input_size=None, on_frame=None) -> List[np.ndarray]:
    """start() on frame 0 with its mask (an unsupervised program: without), step() on the rest;
    returns the masks (frame 0 = given, or predicted by an unsupervised program)."""
    n = len(sequence) if max_frames is None else min(len(sequence), int(max_frames))
    frame, mask = _resize(sequence.frame(0), sequence.mask(0), input_size)
    if getattr(program, "semi", True):
        program.start(frame, mask)
        masks = [np.asarray(mask)]
    else:
        masks = [np.asarray(program.start(frame).mask)]
    if on_frame:
        on_frame()
    for i in range(1, n):
        frame, _ = _resize(sequence.frame(i), None, input_size)
        result = program.step(frame)
        masks.append(np.asarray(getattr(result, "mask", result)))
        if on_frame:
            on_frame()
    return masks


def collect_calibration(
    program_factory: Callable[[Backend], object],
    backend: Backend,
    sequences: Sequence,
    max_frames: int = 200,
    max_samples_per_stage: Optional[int] = 64,
    input_size=None,
    progress: bool = True,
    seed: int = 0,
) -> CalibrationSet:
    """Run ``program_factory(recorder)`` over ``sequences`` (up to ``max_frames`` frames in
    total, spread evenly) with ``backend`` underneath, recording every stage's feeds."""
    sequences = list(sequences)
    if not sequences:
        raise DataError("no calibration sequences: pass a DAVIS-layout folder, a video with --calib-mask, or test://")
    if max_frames is None or int(max_frames) < 2:
        raise DataError(
            f"--calib-frames {max_frames}: calibration needs at least 2 frames (the first frame only "
            f"initialises the program); use e.g. --calib-frames 100"
        )
    per_seq = max(2, math.ceil(int(max_frames) / len(sequences)))
    plan = []
    left = int(max_frames)
    for seq in sequences:
        n = min(len(seq), per_seq, left)
        if n >= 2:
            plan.append((seq, n))
            left -= n
    total = sum(n for _, n in plan)
    if total == 0:
        names = [getattr(s, "name", "?") for s in sequences]
        raise DataError(
            f"zero calibration frames: sequences {names} have fewer than 2 frames each; "
            f"use longer sequences or more of them"
        )
    recorder = RecordingBackend(backend, max_samples_per_stage, seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="calibration", unit="frame")
    used = []
    try:
        for seq, n in plan:
            if bar is not None:
                bar.set_postfix_str(str(getattr(seq, "name", "")))
            program = program_factory(recorder)
            run_program(program, seq, n, input_size, on_frame=bar.update if bar is not None else None)
            used.append({"name": str(getattr(seq, "name", f"seq{len(used)}")), "frames": n})
    finally:
        if bar is not None:
            bar.close()
    never = [s for s, c in recorder.calls.items() if c == 0]
    summary = {
        "sequences": used,
        "frames": total,
        "samples_per_stage": {s: len(v) for s, v in recorder.samples.items()},
        "calls_per_stage": dict(recorder.calls),
        "max_samples_per_stage": max_samples_per_stage,
        "stages_never_run": never,
    }
    return CalibrationSet(recorder.samples, summary)


# --------------------------------------------------------------------------------------
# calibration sources: DAVIS-layout folder, video + first mask, test:// synthetic


class VideoFileSequence:
    """A video file read with OpenCV plus the mask of its first frame (for calibration)."""

    def __init__(self, video: Path, mask_path: Path, max_frames: Optional[int] = None):
        import cv2

        from edgevos.data import read_mask

        self.name = video.stem
        cap = cv2.VideoCapture(str(video))
        frames = []
        while max_frames is None or len(frames) < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        cap.release()
        if not frames:
            raise DataError(f"no frames could be decoded from {video}: is it a video file OpenCV can read?")
        self.frames = frames
        self.first_mask = read_mask(mask_path)
        if self.first_mask.shape != frames[0].shape[:2]:
            raise InputError(
                f"mask {mask_path} is {self.first_mask.shape[1]}x{self.first_mask.shape[0]} but the video "
                f"frames are {frames[0].shape[1]}x{frames[0].shape[0]}: pass a mask of the frame's size"
            )

    def __len__(self):
        return len(self.frames)

    def frame(self, i):
        return self.frames[i]

    def mask(self, i):
        return self.first_mask if i == 0 else None


def open_sequences(
    source: str,
    names: Sequence[str] = (),
    mask: Optional[str] = None,
    resolution: str = "480p",
    synthetic_frames: int = 24,
    synthetic_size=(240, 432),
    max_frames: Optional[int] = None,
):
    """Sequences from a DAVIS-layout folder, a video file + first-frame mask, or ``test://``.

    ``test://`` gives 3 synthetic sequences (``test://N`` for N, seeds 0..N-1);
    ``names`` selects sequences by name (DAVIS names, or ``synthetic-<seed>``).
    """
    from edgevos import data

    names = [n for n in names if n]
    folder = not source.startswith("test://") and Path(
        source[len("file://"):] if source.startswith("file://") else source).expanduser().is_dir()
    if mask and (folder or source.startswith("test://")):
        raise InputError(f"--calib-mask {mask} is for a video --calib; {source} carries its own masks: drop --calib-mask")
    if source.startswith("test://"):
        rest = source[len("test://"):].strip("/")
        try:
            count = int(rest) if rest else 3
        except ValueError:
            raise InputError(f"calibration source '{source}': use test:// or test://N (N synthetic sequences)") from None
        seeds = range(count)
        if names:
            seeds = []
            for n in names:
                try:
                    seeds.append(int(n.rsplit("-", 1)[-1]))
                except ValueError:
                    raise InputError(f"synthetic sequence name '{n}' is not 'synthetic-<seed>'") from None
        h, w = synthetic_size
        return [
            data.make_sequence(data.SyntheticConfig(height=h, width=w, num_frames=synthetic_frames, seed=int(s), num_objects=1))
            for s in seeds
        ]
    path = Path(source[len("file://"):] if source.startswith("file://") else source).expanduser()
    if not path.exists():
        raise DataError(
            f"calibration source {path} does not exist: pass a DAVIS-layout folder "
            f"(JPEGImages/{resolution}, Annotations/{resolution}), a video file with --calib-mask, or test://"
        )
    if path.is_file():
        if not mask:
            raise InputError(f"calibration video {path} needs the mask of its first frame: pass --calib-mask PNG")
        if not Path(mask).is_file():
            raise InputError(f"--calib-mask {mask}: no such file; pass the PNG mask of the video's first frame")
        return [VideoFileSequence(path, Path(mask), max_frames)]
    dataset = data.DavisDataset(path, names or None, resolution=resolution)
    return [dataset[n] for n in dataset.sequences]
