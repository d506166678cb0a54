"""Video sequences and the DAVIS folder layout.

::

    <root>/JPEGImages/480p/<sequence>/00000.jpg ...
    <root>/Annotations/480p/<sequence>/00000.png ...
    <root>/ImageSets/<name>.txt            (or ImageSets/2017/<name>.txt)

Frames and masks are loaded lazily, one file per call, so opening a dataset
costs a directory listing only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from edgevos.data.masks import object_ids as _object_ids
from edgevos.data.masks import read_mask
from edgevos.errors import DataError, InputError

FRAME_EXTS = (".jpg", ".jpeg", ".png")


class VideoSequence:
    """A video with (optional) per-frame masks.

    Subclasses set ``name`` and ``frame_names`` and implement ``frame(i)``
    (uint8 RGB, (H, W, 3)) and ``mask(i)`` (uint8 ids, (H, W), or ``None``
    when the frame has no ground truth).
    """

    name: str = ""
    frame_names: list = []

    def __len__(self) -> int:
        return len(self.frame_names)

    def frame(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def mask(self, i: int) -> Optional[np.ndarray]:
        raise NotImplementedError

    @property
    def object_ids(self) -> list:
        """Object ids present in the first mask (0 and void 255 excluded)."""
        cached = self.__dict__.get("_object_ids")
        if cached is None:
            first = self.mask(0)
            cached = [] if first is None else _object_ids(first)
            self.__dict__["_object_ids"] = cached
        return list(cached)

    def _index(self, i: int) -> int:
        n = len(self)
        j = int(i)
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError(f"frame index {i} out of range for sequence {self.name!r} with {n} frames")
        return j

    def __iter__(self) -> Iterator:
        """Yields ``(frame, mask)`` pairs in order."""
        for i in range(len(self)):
            yield self.frame(i), self.mask(i)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, frames={len(self)})"


class FirstFrames(VideoSequence):
    """The first ``n`` frames of another sequence (all of them when ``n`` is None)."""

    def __init__(self, seq, n: Optional[int] = None):
        self.seq, self.name = seq, seq.name
        names = list(getattr(seq, "frame_names", None) or [f"{k:05d}" for k in range(len(seq))])
        self.frame_names = names if n is None else names[: max(0, int(n))]

    def frame(self, i: int) -> np.ndarray:
        return self.seq.frame(i)

    def mask(self, i: int) -> Optional[np.ndarray]:
        return self.seq.mask(i)


class DavisSequence(VideoSequence):
    """One sequence of a DAVIS-layout folder; files are read on demand."""

    def __init__(self, name: str, frame_paths: Sequence[Path], mask_paths: Sequence[Optional[Path]]):
        self.name = name
        self.frame_paths = list(frame_paths)
        self.mask_paths = list(mask_paths)
        self.frame_names = [p.stem for p in self.frame_paths]
        self._sizes: dict = {}

    def frame(self, i: int) -> np.ndarray:
        import cv2

        path = self.frame_paths[self._index(i)]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"cannot read frame {path}: missing, empty or not an image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def frame_size(self, i: int) -> tuple:
        """(H, W) of frame ``i`` from the image header, without decoding."""
        from PIL import Image, UnidentifiedImageError

        j = self._index(i)
        if j not in self._sizes:
            path = self.frame_paths[j]
            try:
                with Image.open(path) as im:
                    w, h = im.size
            except (OSError, UnidentifiedImageError) as exc:
                raise DataError(f"cannot read frame {path}: {exc}") from exc
            self._sizes[j] = (h, w)
        return self._sizes[j]

    def mask(self, i: int) -> Optional[np.ndarray]:
        j = self._index(i)
        path = self.mask_paths[j]
        if path is None:
            return None
        m = read_mask(path)
        h, w = self.frame_size(j)
        if m.shape != (h, w):
            raise DataError(
                f"mask {path} is {m.shape[1]}x{m.shape[0]} but its frame {self.frame_paths[j]} is {w}x{h}: "
                "masks must have the frame's size"
            )
        return m


class DavisDataset:
    """A DAVIS-layout folder.

    ``sequences``: ``None`` for every sequence folder under
    ``JPEGImages/<resolution>``; the name of an image set (``"train"`` reads
    ``ImageSets/train.txt`` or ``ImageSets/2017/train.txt``); a comma-separated
    string; or a list of names.

    ``allow_missing_masks``: by default every frame must have a mask (as in
    DAVIS train/val) and a missing one is an error naming the file; when True,
    only the first frame needs one and ``mask(i)`` returns ``None`` for the
    others.
    """

    def __init__(self, root, sequences: Union[None, str, Sequence[str]] = None, resolution: str = "480p",
                 allow_missing_masks: bool = False):
        self.root = Path(root)
        self.resolution = resolution
        self.allow_missing_masks = allow_missing_masks
        if not self.root.is_dir():
            raise DataError(f"DAVIS folder not found: {self.root}; pass the folder holding JPEGImages/ and Annotations/")
        self.image_dir = self.root / "JPEGImages" / resolution
        self.mask_dir = self.root / "Annotations" / resolution
        for d in (self.image_dir, self.mask_dir):
            if not d.is_dir():
                raise DataError(f"missing folder {d}: a DAVIS folder has JPEGImages/{resolution} and Annotations/{resolution}")
        self.sequences = self._resolve(sequences)

    def _resolve(self, sequences) -> list:
        if sequences is None:
            names = sorted(p.name for p in self.image_dir.iterdir() if p.is_dir())
            if not names:
                raise DataError(f"no sequence folders in {self.image_dir}")
            return names
        if isinstance(sequences, str):
            for candidate in (self.root / "ImageSets" / f"{sequences}.txt",
                              self.root / "ImageSets" / "2017" / f"{sequences}.txt",
                              self.root / "ImageSets" / "2016" / f"{sequences}.txt"):
                if candidate.is_file():
                    names = [ln.strip() for ln in candidate.read_text().splitlines() if ln.strip()]
                    # DAVIS 2016 lists hold "path/to/frame.jpg path/to/mask.png" lines
                    names = list(dict.fromkeys(n.split()[0].split("/")[-2] if "/" in n else n for n in names))
                    break
            else:
                names = [s.strip() for s in sequences.split(",") if s.strip()]
        else:
            names = [str(s) for s in sequences]
        if not names:
            raise InputError(f"no sequences selected from {sequences!r}")
        for n in names:
            if not (self.image_dir / n).is_dir():
                raise DataError(f"sequence {n!r} not found: no folder {self.image_dir / n}")
        return names

    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[DavisSequence]:
        for name in self.sequences:
            yield self[name]

    def __contains__(self, name) -> bool:
        return name in self.sequences

    def __getitem__(self, name) -> DavisSequence:
        if isinstance(name, int):
            name = self.sequences[name]
        if name not in self.sequences:
            raise DataError(f"sequence {name!r} is not in this dataset ({self.root}); known: {', '.join(self.sequences[:10])}")
        frame_dir = self.image_dir / name
        ann_dir = self.mask_dir / name
        frames = sorted(p for p in frame_dir.iterdir() if p.suffix.lower() in FRAME_EXTS and p.is_file())
        if not frames:
            raise DataError(f"no frames (*.jpg) in {frame_dir}")
        if not ann_dir.is_dir():
            raise DataError(f"missing annotation folder {ann_dir} for sequence {name!r}")
        masks_on_disk = {p.stem: p for p in ann_dir.iterdir() if p.suffix.lower() == ".png"}
        frame_stems = {p.stem for p in frames}
        orphans = sorted(set(masks_on_disk) - frame_stems)
        if orphans:
            raise DataError(
                f"mask {masks_on_disk[orphans[0]]} has no frame in {frame_dir} "
                f"({len(orphans)} mask(s) without a frame): remove them or add the frames"
            )
        mask_paths = []
        for i, f in enumerate(frames):
            p = masks_on_disk.get(f.stem)
            if p is None and (i == 0 or not self.allow_missing_masks):
                missing = [g.stem for g in frames if g.stem not in masks_on_disk]
                what = "the first frame needs a mask" if i == 0 else "every frame needs a mask"
                raise DataError(
                    f"frame {f} has no mask: expected {ann_dir / (f.stem + '.png')} "
                    f"({len(missing)} frame(s) without a mask; {what})"
                )
            mask_paths.append(p)
        return DavisSequence(name, frames, mask_paths)

    def __repr__(self) -> str:
        return f"DavisDataset(root={str(self.root)!r}, sequences={len(self.sequences)}, resolution={self.resolution!r})"


def write_davis(root, sequences, resolution: str = "480p", imageset: Optional[str] = None,
                jpeg_quality: int = 95) -> Path:
    """Write sequences (any :class:`VideoSequence`) in the DAVIS layout:
    JPEG frames, indexed-PNG masks (frames without a mask get none) and, if
    ``imageset`` is given, ``ImageSets/<imageset>.txt`` listing them."""
    import cv2

    from edgevos.data.masks import write_mask

    root = Path(root)
    names = []
    for seq in sequences:
        fdir = root / "JPEGImages" / resolution / seq.name
        mdir = root / "Annotations" / resolution / seq.name
        fdir.mkdir(parents=True, exist_ok=True)
        mdir.mkdir(parents=True, exist_ok=True)
        for i, stem in enumerate(seq.frame_names):
            rgb = seq.frame(i)
            ok = cv2.imwrite(str(fdir / f"{stem}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            if not ok:
                raise DataError(f"cannot write frame {fdir / (stem + '.jpg')}")
            m = seq.mask(i)
            if m is not None:
                write_mask(mdir / f"{stem}.png", m)
        names.append(seq.name)
    if imageset:
        (root / "ImageSets").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / f"{imageset}.txt").write_text("".join(f"{n}\n" for n in names))
    return root
