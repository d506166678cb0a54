"""What ``edgevos bench`` plays: sequences decoded into memory first (a DAVIS folder, davis://ROOT,
test:// or a video with its first mask), and a source that plays them as fast as the session takes them."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgevos.errors import InputError
from edgevos.parsing import split_list


def open_bench_sequences(source: str, names=(), frames: Optional[int] = None, init_mask: Optional[str] = None):
    """(sequences, has_ground_truth, description) for a DAVIS folder, davis://ROOT, test://, or a video + mask."""
    from edgevos import data

    if source.startswith("test://"):
        from edgevos.runtime.uri import parse_source

        uri = parse_source(source)
        unknown = set(uri.query) - {"size", "objects", "speed", "frames", "seed"}
        if unknown:
            raise InputError(f"{source}: unknown option(s) {sorted(unknown)}; known: objects, size, speed, frames")
        h, w = uri.get_size("size", (240, 432))
        n = frames or uri.get_int("frames", 60)
        if n < 3:
            raise InputError(f"--frames {n}: J&F needs at least 3 frames per sequence")
        seeds = []
        for name in (names or [f"synthetic-{k}" for k in range(2)]):
            try:
                seeds.append(int(str(name).rsplit("-", 1)[-1]))
            except ValueError:
                raise InputError(f"sequence '{name}' of test:// is not 'synthetic-<seed>' (e.g. synthetic-0)") from None
        kw = {"speed": uri.get_float("speed", 1.0)} if "speed" in uri.query else {}
        seqs = [data.make_sequence(data.SyntheticConfig(height=h, width=w, num_frames=n, seed=s,
                                                        num_objects=uri.get_int("objects", 2), **kw))
                for s in seeds]
        for s, seed in zip(seqs, seeds):
            s.name = f"synthetic-{seed}"
        return seqs, True, f"test:// ({len(seqs)} generated sequences, {h}x{w}, {n} frames)"
    if source.startswith("davis://"):
        from edgevos.runtime.uri import parse_source

        uri = parse_source(source)
        names = list(names) or split_list(uri.query.get("seq", ""))
        source = uri.path
    path = Path(source[len("file://"):] if source.startswith("file://") else source).expanduser()
    if not path.exists():
        raise InputError(f"--source {source} does not exist: pass a DAVIS-layout folder, a video file "
                         f"with --init-mask, or test://")
    if path.is_file():
        if not init_mask:
            raise InputError(f"--source {path} is a video: pass the mask of its first frame with --init-mask PNG")
        from edgevos.export.calibrate import VideoFileSequence

        seq = VideoFileSequence(path, Path(init_mask), frames)
        return [seq], False, f"{path.name} ({len(seq)} frames, first-frame mask {Path(init_mask).name})"
    ds = data.DavisDataset(path, sequences=list(names) or None)
    seqs = [data.FirstFrames(ds[n], frames) for n in ds.sequences]
    return seqs, True, f"DAVIS {path} ({len(seqs)} sequences)"


class MemorySource:
    """Frames decoded beforehand, played as fast as the session takes them."""

    live = False

    def __init__(self, name: str, frames, gts):
        from edgevos.runtime.sources import Frame

        self.uri = f"memory://{name}"
        self._frames = [Frame(i, None, f, g) for i, (f, g) in enumerate(zip(frames, gts))]
        self.first_mask = gts[0]
        self.dropped = self.reconnects = 0
        self._stop = False

    def __iter__(self):
        for f in self._frames:
            if self._stop:
                return
            yield f

    def stop(self):
        self._stop = True

    def close(self):
        self._stop = True
