"""Sources with ground truth: ``test://`` (a synthetic sequence) and ``davis://`` (a
DAVIS-layout sequence); ``frame.gt`` and ``source.first_mask`` carry the masks."""
from __future__ import annotations

from typing import Iterator

from edgevos.errors import DataError, InputError, SourceError
from edgevos.runtime.frames import Frame, Source
from edgevos.runtime.uri import URI


#: the largest generated frame (4K UHD): the synthetic scene holds several float copies of it
MAX_TEST_PIXELS = 2160 * 3840
#: objects a generated sequence can hold (edgevos.data.synthetic.SyntheticConfig)
MAX_TEST_OBJECTS = 20


class TestSource(Source):
    """``test://?frames=60&objects=2&seed=0&size=240x432&speed=1``: a synthetic
    sequence (moving shapes on a textured background) with ground truth."""

    __test__ = False  # not a pytest class

    def __init__(self, uri: URI):
        super().__init__(uri)
        from edgevos.data.synthetic import SyntheticConfig

        h, w = uri.get_size("size", (240, 432))
        kwargs = dict(height=h, width=w, num_frames=uri.get_int("frames", 60),
                      num_objects=uri.get_int("objects", 2), seed=uri.get_int("seed", 0))
        if "speed" in uri.query:
            kwargs["speed"] = uri.get_float("speed", 1.0)
        if kwargs["num_frames"] < 1 or not 1 <= kwargs["num_objects"] <= MAX_TEST_OBJECTS:
            raise InputError(f"{uri}: frames must be >= 1 and objects in 1..{MAX_TEST_OBJECTS}")
        if h * w > MAX_TEST_PIXELS:
            raise InputError(f"{uri}: size={h}x{w} is larger than a generated frame may be "
                             f"({MAX_TEST_PIXELS // 1_000_000} megapixels, e.g. 2160x3840): choose a smaller size")
        unknown = set(uri.query) - {"size", "frames", "objects", "seed", "speed", "fps"}
        if unknown:
            raise InputError(f"{uri}: unknown option(s) {sorted(unknown)}; known: frames, objects, seed, size, speed, fps")
        self._config = SyntheticConfig(**kwargs)
        self._scene = self._start_scene()  # built lazily: one frame at a time, however long the sequence
        self._first = next(self._scene)
        self.first_mask = self._first[1].copy()
        self.size = tuple(self._first[0].shape[:2])
        self.fps = uri.get_float("fps", 30.0)
        if not 0 < self.fps < 1e4:
            raise InputError(f"{uri}: fps={uri.query.get('fps')} must be a positive rate, e.g. fps=30")

    def _start_scene(self):
        from edgevos.data.synthetic import iter_frames

        scene = iter_frames(self._config)
        next(scene)  # the depth order
        return scene

    def __len__(self) -> int:
        return self._config.num_frames

    def __iter__(self) -> Iterator[Frame]:
        if self._scene is not None:  # the first pass reuses the frame rendered for first_mask
            scene, first, self._scene = self._scene, self._first, None
        else:
            scene = self._start_scene()
            first = next(scene)
        for i in range(len(self)):
            if self._stop.is_set():
                return
            rgb, mask, _ = first if i == 0 else next(scene)
            self.delivered += 1
            yield Frame(i, i / self.fps, rgb, mask)


class DavisSource(Source):
    """``davis://ROOT?seq=NAME``: the JPEG frames of one DAVIS-layout sequence,
    with its annotations as ground truth (``first_mask`` from frame 0)."""

    def __init__(self, uri: URI):
        super().__init__(uri)
        from edgevos.data.davis import DavisDataset

        name = uri.query.get("seq")
        if not name:
            raise InputError(f"{uri}: name the sequence, e.g. davis://ROOT?seq=bear")
        try:
            self._seq = DavisDataset(uri.path, sequences=[name], allow_missing_masks=True)[name]
        except DataError as exc:
            raise SourceError(f"{uri}: {exc}") from exc
        self.first_mask = self._seq.mask(0)
        self.fps = 24.0

    def __len__(self) -> int:
        return len(self._seq)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self._seq)):
            if self._stop.is_set():
                return
            try:
                rgb = self._seq.frame(i)
                gt = self._seq.mask(i)
            except DataError as exc:
                raise SourceError(f"{self.uri}: {exc}") from exc
            self._check_size(rgb.shape[0], rgb.shape[1], i)
            self.delivered += 1
            yield Frame(i, i / self.fps, rgb, gt)
