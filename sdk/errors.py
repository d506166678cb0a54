"""One exception base class for the package.

Messages say what was wrong, with the offending value, and what to do.
"""


class EdgevosError(Exception):
    """Base class of every error edgevos raises on purpose."""


class InputError(EdgevosError, ValueError):
    """A value passed by the user is wrong (shape, dtype, range, name)."""


class DataError(EdgevosError):
    """A dataset folder or file is missing, unreadable or inconsistent."""


class BundleError(EdgevosError):
    """A bundle is missing files, was tampered with, or was made by another version."""


class SourceError(EdgevosError):
    """A video source or sink failed (missing file, corrupt stream, camera gone)."""


class DeviceError(EdgevosError):
    """An accelerator call failed: the CUDA runtime, or TensorRT running an engine."""


class DependencyError(EdgevosError, ImportError):
    """An optional dependency is not installed."""


def require(module: str, extra: str, what: str = ""):
    """Import an optional dependency or raise DependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the machine
        purpose = f" (needed for {what})" if what else ""
        raise DependencyError(
            f"'{module}' is not installed{purpose}: pip install 'edgevos[{extra}]'"
        ) from exc
