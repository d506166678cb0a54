"""Mask PNG reading and writing in the DAVIS convention.

A mask is a ``uint8`` array of shape (H, W): 0 is background, ``k`` is object
``k`` and 255 is "void" (pixels the annotators left undecided).  On disk masks
are indexed (palette) PNGs whose pixel values are the ids, coloured with the
DAVIS palette.  The DAVIS 2016 release instead stores one object as an 8-bit
grayscale 0/255 image; :func:`read_mask` maps its 255 to object 1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevos.errors import DataError, InputError
from edgevos.files import write_bytes

VOID = 255
#: a mask PNG larger than this (width x height, read from its header) is refused undecoded
MAX_MASK_PIXELS = 100_000_000


def _davis_palette() -> np.ndarray:
    """The PASCAL VOC colour map that DAVIS masks use: bit j of the id's
    bits (0,3,6), (1,4,7), (2,5) goes to bit 7-j of red, green and blue."""
    ids = np.arange(256, dtype=np.int64)
    palette = np.zeros((256, 3), dtype=np.int64)
    for j in range(8):
        shift = 7 - j
        for channel in range(3):
            bit = (ids >> (3 * j + channel)) & 1
            palette[:, channel] |= bit << shift
    return palette.astype(np.uint8)


DAVIS_PALETTE: np.ndarray = _davis_palette()
DAVIS_PALETTE.setflags(write=False)

# 24-bit colour -> id, for masks that were saved as RGB images
_COLOR_TO_ID = {
    (int(r) << 16) | (int(g) << 8) | int(b): i for i, (r, g, b) in enumerate(DAVIS_PALETTE)
}


def read_mask(path) -> np.ndarray:
    """Read a mask PNG as a ``uint8`` id map of shape (H, W).

    * indexed (palette) PNG: pixel values are the ids (255 stays void);
    * 8-bit grayscale holding only 0 and 255 (DAVIS 2016): 255 -> object 1;
    * other grayscale / 16-bit images: values are the ids (must be <= 255);
    * 1-bit images: set pixels -> object 1;
    * RGB(A) images whose colours are DAVIS palette entries: colour -> id.

    Raises :class:`DataError` naming the file if it is missing or unreadable.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"mask file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            im = Image.open(path)
        with im:
            w, h = im.size
            if w * h > MAX_MASK_PIXELS:
                raise InputError(f"mask {path} is {w}x{h} ({w * h / 1e6:.0f} megapixels), above the limit of "
                                 f"{MAX_MASK_PIXELS // 1_000_000} megapixels: give a mask the size of the video frames")
            im.load()
            mode = im.mode
            arr = np.array(im)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow refused at its own, higher limit
        raise InputError(f"mask {path}: {exc}; the limit is {MAX_MASK_PIXELS // 1_000_000} megapixels: "
                         f"give a mask the size of the video frames") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read mask {path}: {exc}; re-export it as an indexed or grayscale PNG") from exc

    if mode == "P":
        return arr.astype(np.uint8, copy=False)
    if mode == "1":
        return arr.astype(np.uint8)
    if mode in ("L", "LA"):
        if arr.ndim == 3:
            arr = arr[..., 0]
        counts = np.bincount(arr.ravel(), minlength=256)
        if counts[1:255].sum() == 0:  # only 0 and 255: a DAVIS 2016 single-object mask
            return (arr == 255).astype(np.uint8)
        return arr.astype(np.uint8, copy=False)
    if mode.startswith("I"):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DataError(
                f"mask {path} has values in [{arr.min()}, {arr.max()}]; ids must be 0..255"
            )
        return arr.astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        rgb = arr[..., :3].astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        uniq, inverse = np.unique(code, return_inverse=True)
        ids = np.empty(len(uniq), dtype=np.uint8)
        for i, c in enumerate(uniq.tolist()):
            if c not in _COLOR_TO_ID:
                raise DataError(
                    f"mask {path} is an RGB image with colour "
                    f"({c >> 16}, {(c >> 8) & 255}, {c & 255}) that is not in the DAVIS palette; "
                    "save masks as indexed PNGs (edgevos.data.write_mask)"
                )
            ids[i] = _COLOR_TO_ID[c]
        return ids[inverse.reshape(code.shape)]
    raise DataError(f"mask {path} has unsupported PNG mode {mode!r}; use an indexed or grayscale PNG")


_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


_PLTE = _chunk(b"PLTE", DAVIS_PALETTE.astype(np.uint8).tobytes())


def _png_params(cv2) -> list:
    """zlib level 1, run-length strategy, no row filter: an id map is long runs of a few values, so
    the row filters buy nothing and choosing them per row is most of the time (measured on a DAVIS
    480p mask: 2.55 ms -> 0.45 ms, 4.7 kB -> 1.7 kB)."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    if hasattr(cv2, "IMWRITE_PNG_STRATEGY_RLE"):
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER_NONE"):  # OpenCV >= 4.10
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    return params


def encode_indexed_png(ids: np.ndarray) -> bytes:
    """An (H, W) uint8 id map as an indexed PNG with the DAVIS palette.

    OpenCV encodes the pixels as an 8-bit grayscale PNG (see ``_png_params``, with
    the GIL released, so a writer thread does not stall inference); an 8-bit
    palette image stores exactly the same IDAT bytes, so the result is that file
    with colour type 3 in IHDR and a PLTE chunk added.  Pillow, OpenCV and the
    DAVIS tools read it back as the same ids.
    """
    import struct

    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(ids, dtype=np.uint8), _png_params(cv2))
    if not ok:
        raise DataError("OpenCV could not encode the mask as PNG")
    raw = buf.tobytes()
    if raw[:8] != _PNG_SIG or raw[12:16] != b"IHDR":
        raise DataError("unexpected PNG layout from OpenCV's encoder")
    (n,) = struct.unpack(">I", raw[8:12])
    ihdr = bytearray(raw[16:16 + n])
    if ihdr[8] != 8 or ihdr[9] != 0:
        raise DataError(f"expected an 8-bit grayscale PNG from OpenCV, got bit depth {ihdr[8]} colour type {ihdr[9]}")
    ihdr[9] = 3  # palette
    rest = raw[16 + n + 4:]  # after IHDR's CRC
    return raw[:8] + _chunk(b"IHDR", bytes(ihdr)) + _PLTE + rest


def write_mask(path, mask: np.ndarray) -> None:
    """Write an id map as an indexed PNG with the DAVIS palette.

    The file is written atomically (:func:`edgevos.files.write_bytes`), so
    readers never see a half-written mask.
    Missing parent folders are created.
    """

    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"mask must be 2-D (H, W), got shape {arr.shape} for {path}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"mask for {path} has dtype {arr.dtype}; pass integer ids (uint8), e.g. mask.astype(np.uint8)"
        )
    elif arr.dtype != np.uint8 and arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InputError(f"mask for {path} has ids in [{arr.min()}, {arr.max()}]; ids must be 0..255")
    arr = np.ascontiguousarray(arr, dtype=np.uint8)

    write_bytes(path, encode_indexed_png(arr))


def object_ids(mask: np.ndarray) -> list[int]:
    """Sorted object ids present in a mask (0 and void excluded)."""
    arr = np.asarray(mask)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InputError(f"mask ids must be 0..255, got values in [{arr.min()}, {arr.max()}]")
    counts = np.bincount(arr.ravel(), minlength=256)
    return [int(v) for v in np.flatnonzero(counts) if v != 0 and v != VOID]
