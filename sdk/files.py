"""Atomic file writes: a temporary file beside the target, moved onto it with ``os.replace``.

Readers see the old file or the new one, never a half-written one, and a write
that fails leaves no temporary file behind.  The temporary name is unique to the
process and thread (``.<name>.<pid>.<thread>.tmp``), so concurrent writers of one
path do not collide; the last ``os.replace`` wins.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)


def temporary_beside(path: PathLike) -> Path:
    """The temporary name this process and thread write ``path`` under."""
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"


def is_temporary(name: str, of: str) -> bool:
    """Whether a file name is a temporary of :func:`temporary_beside` for the file name ``of``."""
    return name.startswith(f".{of}.") and name.endswith(".tmp")


def umask_mode() -> int:
    """The mode a plain ``open`` gives a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def publish(tmp: PathLike, path: PathLike, mode: Optional[int] = None) -> None:
    """Move a finished temporary file onto ``path``, after a ``chmod`` to ``mode`` when given."""
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def _discard(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


@contextmanager
def replacing(path: PathLike, mode: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to (for writers that take a path).

    When the block ends normally the file replaces ``path`` (with ``mode`` when
    given); when it raises, the temporary file is deleted.  Missing parent
    folders are created.

    Args:
        path: the file to write.
        mode: permission bits for the new file; default: those the writer gave it.

    Yields:
        The temporary path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    try:
        yield tmp
        publish(tmp, path, mode)
    except BaseException:
        _discard(tmp)
        raise


def write_bytes(path: PathLike, data: bytes, mode: Optional[int] = None) -> Path:
    """Write ``data`` to ``path`` atomically; missing parent folders are created.

    Args:
        path: the file to write.
        data: its new content.
        mode: permission bits; default: 0o666 less the umask, as ``open`` gives.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        fd = os.open(tmp, _FLAGS, 0o666)
    except FileNotFoundError:  # the folder first, only when needed (masks are written once a frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, _FLAGS, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        publish(tmp, path, mode)
    except BaseException:
        _discard(tmp)
        raise
    return path


def write_text(path: PathLike, text: str, mode: Optional[int] = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`write_bytes`."""
    return write_bytes(path, text.encode("utf-8"), mode)


def write_json(path: PathLike, obj: Any, indent: Optional[int] = 2, mode: Optional[int] = None, **dumps) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; ``dumps`` go to :func:`json.dumps`."""
    return write_text(path, json.dumps(obj, indent=indent, **dumps), mode)
