"""Source and sink URIs.

Sources::

    file://clip.mp4  file:///abs/clip.mkv  clip.mp4      any container GStreamer decodes
    v4l2:///dev/video0   (v4l2://0 is short for /dev/video0)    USB / V4L2 camera
    csi://0[?width=1280&height=720&fps=30]                     Jetson CSI camera (nvarguscamerasrc)
    rtsp://[user:pass@]host:8554/path                            network camera
    test://?frames=60&objects=2&seed=0&size=240x432&speed=1      synthetic sequence with ground truth
    davis://ROOT?seq=NAME                                        a DAVIS-layout sequence with ground truth

Sinks::

    file://out.mp4 | file://out.mkv    overlay video
    masks://DIR[?seq=NAME&overwrite=1] DAVIS-layout indexed PNGs (DIR[/NAME]/00000.png); DIR must hold
                                       no PNGs, overwrite=1 deletes an earlier run's masks first
    display://0                        on-screen window
    json://stats.jsonl                 one JSON line per frame
    rtsp://host:8554/path              overlay stream pushed to an RTSP server (rtspclientsink)

A ``?`` in a file name: a bare path is always taken whole (``clip?1.mp4`` is that file);
in ``file://PATH?REST`` the whole ``PATH?REST`` is the file when such a file exists,
otherwise ``?`` starts the options (sources: ``decode-threads``; sinks: ``encoder``) and
an unknown option is refused, so a name is never cut at its ``?`` silently.

Credentials in a URI are never shown: ``str()``/``repr()`` of a :class:`URI`
and :func:`redact` turn ``rtsp://user:pass@host`` into ``rtsp://***@host``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Tuple
from urllib.parse import parse_qsl

from edgevos.errors import InputError
from edgevos.parsing import parse_hw

SOURCE_SCHEMES = ("file", "v4l2", "csi", "rtsp", "test", "davis")
SINK_SCHEMES = ("file", "masks", "display", "json", "rtsp")
LIVE_SCHEMES = ("v4l2", "csi", "rtsp")
#: the options a file:// URI takes after '?'
FILE_OPTIONS = {"source": ("decode-threads",), "sink": ("encoder",)}

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)
_CRED_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """Replace ``user[:password]@`` in every URI inside ``text`` with ``***@``."""
    return _CRED_RE.sub(r"\1***@", str(text))


@dataclass(frozen=True)
class URI:
    """A parsed source/sink URI.  ``raw`` keeps credentials; ``str()`` never shows them."""

    scheme: str
    path: str
    query: Dict[str, str] = field(default_factory=dict)
    raw: str = field(default="", repr=False)

    def __str__(self) -> str:
        return redact(self.raw)

    def __repr__(self) -> str:
        return f"URI({redact(self.raw)!r})"

    @property
    def live(self) -> bool:
        return self.scheme in LIVE_SCHEMES

    def _get(self, key: str, default, cast, noun: str):
        v = self.query.get(key)
        if v is None:
            return default
        try:
            return cast(v)
        except (ValueError, InputError):
            raise InputError(f"{self}: '{key}={v}' {noun}") from None

    def get_int(self, key: str, default: int) -> int:
        return self._get(key, default, int, "is not an integer")

    def get_float(self, key: str, default: float) -> float:
        return self._get(key, default, float, "is not a number")

    def get_size(self, key: str, default: Tuple[int, int]) -> Tuple[int, int]:
        """``size=HxW`` -> (H, W)."""
        return self._get(key, default, parse_hw, "is not a size; write it as HEIGHTxWIDTH, e.g. 240x432")


def _split_query(rest: str) -> Tuple[str, Dict[str, str]]:
    if "?" in rest:
        path, q = rest.split("?", 1)
        return path, dict(parse_qsl(q, keep_blank_values=True))
    return rest, {}


def _file_query(rest: str, path: str, query: Dict[str, str], kind: str, text: str):
    """``file://`` path and options: an existing file named with its ``?`` wins; otherwise
    every option must be one a file URI takes."""
    import os

    if os.path.isfile(rest):
        return rest, {}
    unknown = sorted(set(query) - set(FILE_OPTIONS[kind]))
    if unknown:
        raise InputError(
            f"{kind} '{redact(text)}': '?' starts options, and {unknown} is not one (file:// takes "
            f"{', '.join(FILE_OPTIONS[kind])}); for a file whose name holds '?', pass the path without file://"
        )
    return path, query


def parse_uri(text: str, kind: str = "source") -> URI:
    """Parse a source (``kind='source'``) or sink (``kind='sink'``) URI.

    A bare path (no ``scheme://``) means ``file://``.  Unknown schemes raise
    :class:`InputError` listing the valid ones.
    """
    if kind not in ("source", "sink"):
        raise InputError(f"kind must be 'source' or 'sink', got {kind!r}")
    valid = SOURCE_SCHEMES if kind == "source" else SINK_SCHEMES
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"empty {kind} URI: pass one of {', '.join(s + '://' for s in valid)}")
    text = text.strip()
    m = _SCHEME_RE.match(text)
    if not m:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", text) or re.match(r"^[A-Za-z]{2,}:[^\\]", text):
            raise InputError(
                f"{kind} URI '{redact(text)}' is malformed: write SCHEME://..., one of "
                f"{', '.join(s + '://' for s in valid)}"
            )
        return URI("file", text, {}, "file://" + text)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme not in valid:
        raise InputError(
            f"unknown {kind} URI scheme '{scheme}://' in '{redact(text)}': valid {kind} schemes are "
            f"{', '.join(s + '://' for s in valid)}"
        )
    if scheme == "rtsp":
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        if not host:
            raise InputError(f"'{redact(text)}' has no host: write rtsp://host:port/path")
        return URI(scheme, rest, {}, text)
    path, query = _split_query(rest)
    if scheme == "file" and "?" in rest:
        path, query = _file_query(rest, path, query, kind, text)
    if scheme == "file" or scheme == "davis" or scheme == "masks" or scheme == "json":
        if not path:
            raise InputError(f"'{text}' has no path: write {scheme}://PATH (relative or absolute)")
    elif scheme == "v4l2":
        if re.fullmatch(r"\d+", path):
            path = f"/dev/video{path}"
        if not path.startswith("/dev/"):
            raise InputError(f"'{text}' does not name a device: write v4l2:///dev/videoN")
    elif scheme == "csi":
        path = path or "0"
        if not re.fullmatch(r"\d+", path):
            raise InputError(f"'{text}': the CSI sensor id must be a number, e.g. csi://0")
    elif scheme == "display":
        path = path or "0"
    return URI(scheme, path, query, text)


def parse_source(text: str) -> URI:
    return parse_uri(text, "source")


def parse_sink(text: str) -> URI:
    return parse_uri(text, "sink")
