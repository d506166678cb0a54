"""What a video file's container says without decoding it: an MP4/MOV's video track
duration and whether its index is missing (a recording cut off before it was finalized)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


_BMFF_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"moof", b"mfra", b"uuid",
             b"styp", b"sidx", b"meta", b"pdin", b"udta"}


#: containers whose recorded duration is exact (not estimated from the bitrate)
DURATION_CONTAINERS = ("video/x-matroska", "video/webm", "video/x-msvideo", "video/quicktime")


def isobmff(path: Path) -> bool:
    """Whether a file starts like an ISO BMFF (MP4/MOV) file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def _boxes(fh, start: int, end: int):
    """(type, payload offset, payload end) of the ISO BMFF boxes between two file offsets."""
    import struct

    offset = start
    while offset + 8 <= end:
        fh.seek(offset)
        hdr = fh.read(16)
        if len(hdr) < 8:
            return
        size, kind = struct.unpack(">I4s", hdr[:8])
        head = 8
        if size == 1 and len(hdr) >= 16:
            size, head = struct.unpack(">Q", hdr[8:16])[0], 16
        elif size == 0:
            size = end - offset
        if size < head:
            return
        yield kind, offset + head, min(offset + size, end)
        offset += size


def mp4_video_duration(path: Path) -> Optional[float]:
    """The presentation duration (s) of an MP4/MOV file's first video track, from its
    ``moov`` index (``tkhd`` in movie time, else ``mdhd``); None when there is no such
    index, the file is fragmented (durations live in the fragments) or it is malformed."""
    import struct

    def child(fh, start, end, kind):
        return next(((a, b) for k, a, b in _boxes(fh, start, end) if k == kind), None)

    def full_box(fh, start, fields_v0, fields_v1):
        fh.seek(start)
        version = fh.read(1)[0]
        fh.seek(start + 4)
        fmt = fields_v1 if version == 1 else fields_v0
        return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            moov = child(fh, 0, size, b"moov")
            if moov is None or child(fh, *moov, b"mvex") is not None:
                return None
            mvhd = child(fh, *moov, b"mvhd")
            movie_scale = full_box(fh, mvhd[0], ">IIII", ">QQIQ")[2] if mvhd else 0
            for kind, start, end in _boxes(fh, *moov):
                if kind != b"trak":
                    continue
                mdia = child(fh, start, end, b"mdia")
                hdlr = child(fh, *mdia, b"hdlr") if mdia else None
                if hdlr is None:
                    continue
                fh.seek(hdlr[0] + 8)
                if fh.read(4) != b"vide":
                    continue
                tkhd = child(fh, start, end, b"tkhd")
                if tkhd and movie_scale:
                    t = full_box(fh, tkhd[0], ">IIIII", ">QQIIQ")[4]
                    if 0 < t < 0xFFFFFFFF:
                        return t / movie_scale
                mdhd = child(fh, *mdia, b"mdhd")
                if mdhd:
                    scale, dur = full_box(fh, mdhd[0], ">IIII", ">QQIQ")[2:4]
                    return dur / scale if scale and 0 < dur < 0xFFFFFFFF else None
                return None
    except (OSError, IndexError, struct.error, TypeError):
        return None
    return None


def isobmff_problem(path: Path) -> Optional[str]:
    """For MP4/MOV files: a reason the file cannot play (no 'moov' index: the recording
    was cut off before it was finalized), else None.  Other containers: None."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            return None
        offset, seen = 0, set()
        while offset + 8 <= size:
            fh.seek(offset)
            hdr = fh.read(16)
            box_size, kind = struct.unpack(">I4s", hdr[:8])
            if kind not in _BMFF_TOP:
                return None  # not a box sequence we understand: let GStreamer judge
            if box_size == 1 and len(hdr) >= 16:
                box_size = struct.unpack(">Q", hdr[8:16])[0]
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8:
                return None
            seen.add(kind)
            if kind in (b"moov", b"moof"):
                return None
            if offset + box_size > size:
                break
            offset += box_size
    if b"moov" not in seen and b"moof" not in seen:
        return ("MP4/MOV file has no 'moov' index: it is truncated or was not finalized "
                "(a recording cut off before it was closed); re-copy or re-record it")
    return None
