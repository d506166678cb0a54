"""GStreamer for sources and sinks: loaded once on first use, element probes, quoting.

Importing this module does not import GStreamer; :func:`gst` does.
"""
from __future__ import annotations

import threading
from pathlib import Path

from edgevos.errors import require
from edgevos.jetson.pipelines import quote

__all__ = ["gst", "has_element", "on_jetson", "quote"]

_GST = None
_GST_LOCK = threading.Lock()


def _prefer_libgcc_unwinder() -> None:
    """Put libgcc_s's C++ unwinder in the global symbol scope before GStreamer loads.

    libgstreamer links libunwind.so.8, which also exports ``_Unwind_*``.  If it
    reaches the global scope first, C++ libraries loaded later in the process
    (PyTorch's tracer and ``torch.load``) unwind their exceptions with it and
    abort.  Loading libgcc_s globally first keeps the toolchain's unwinder.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("gcc_s") or "libgcc_s.so.1"
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    except OSError:  # not a glibc/libgcc system: nothing to protect
        pass


def gst():
    """Import and initialise GStreamer (``Gst``) once; DependencyError if absent."""
    global _GST
    with _GST_LOCK:
        if _GST is None:
            _prefer_libgcc_unwinder()
            gi = require("gi", "gst", "GStreamer sources and sinks")
            try:
                gi.require_version("Gst", "1.0")
                gi.require_version("GstApp", "1.0")
                from gi.repository import Gst, GstApp  # noqa: F401  (GstApp adds try_pull_sample)
            except (ValueError, ImportError) as exc:
                from edgevos.errors import DependencyError

                raise DependencyError(
                    f"GStreamer 1.0 introspection data not found ({exc}): install the OS packages "
                    "gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 (Debian/Ubuntu; JetPack has them)"
                ) from exc
            Gst.init(None)
            _GST = Gst
    return _GST


def has_element(name: str) -> bool:
    """True when the GStreamer element factory ``name`` is installed."""
    return gst().ElementFactory.find(name) is not None


def on_jetson() -> bool:
    """True on a Jetson with its hardware video elements available."""
    if not Path("/etc/nv_tegra_release").exists():
        return False
    try:
        return has_element("nvv4l2decoder") and has_element("nvvidconv")
    except Exception:
        return False
