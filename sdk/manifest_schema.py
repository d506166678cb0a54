"""The bundle manifest's schema and digest.

:func:`check_manifest` checks the type of every field a loader reads, so a malformed
manifest is refused by name instead of failing later inside a backend.
:func:`manifest_digest` is the SHA-256 of the whole manifest (all fields except the
digest itself, canonical JSON): stored as ``manifest_sha256`` when the bundle is
written, it makes an edit to any field (config, sizes, stage signatures, file
names) as visible as an edit to a stage file.
"""
from __future__ import annotations

import hashlib
import json
import math
import re

from edgevos.errors import BundleError

DIGEST_KEY = "manifest_sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def manifest_digest(manifest: dict) -> str:
    """SHA-256 of the manifest without its ``manifest_sha256`` field (keys sorted, no spaces)."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str(v) -> bool:
    return isinstance(v, str) and bool(v)


def _str_map(v) -> bool:
    return isinstance(v, dict) and all(_str(k) and _str(x) for k, x in v.items())


def _tensor(v) -> bool:
    return (isinstance(v, dict) and _str(v.get("name")) and isinstance(v.get("shape"), list)
            and all(_int(s) and s > 0 for s in v["shape"]) and isinstance(v.get("dtype", "float32"), str))


def _stage(v) -> bool:
    return (isinstance(v, dict) and _str(v.get("name")) and isinstance(v.get("doc", ""), str)
            and all(isinstance(v.get(k), list) and all(_tensor(t) for t in v[k]) for k in ("inputs", "outputs"))
            and _str_map(v.get("files", {})) and _str_map(v.get("precision", {})))


def _numbers(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                       for x in v)


#: field -> (check, what it must be); ``required`` fields must be present
FIELDS = {
    "family": (_str, "a non-empty string"),
    "input_size": (lambda v: isinstance(v, list) and len(v) == 2 and all(_int(s) and s > 0 for s in v),
                   "[height, width], two positive integers"),
    "stages": (lambda v: isinstance(v, list) and bool(v) and all(_stage(s) for s in v),
               "a non-empty list of stages, each with a name, inputs, outputs and files"),
    "files": (lambda v: isinstance(v, dict) and all(_str(k) and isinstance(h, str) and _HEX64.fullmatch(h)
                                                     for k, h in v.items()),
              "an object of file name -> SHA-256 (64 hex digits)"),
    "edgevos_version": (lambda v: isinstance(v, str), "a string"),
    "preset": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "precisions": (lambda v: isinstance(v, list) and all(_str(p) for p in v), "a list of precision names"),
    "config": (lambda v: isinstance(v, dict), "an object"),
    "normalization": (lambda v: isinstance(v, dict) and all(_numbers(v[k]) for k in ("mean", "std") if k in v)
                      and not any(x == 0 for x in v.get("std", [])),
                      "an object whose mean and std are lists of finite numbers (std non-zero)"),
    "calibration": (lambda v: isinstance(v, dict), "an object"),
    "quantization": (lambda v: isinstance(v, dict), "an object"),
    "parity": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "tools": (lambda v: isinstance(v, dict), "an object"),
    "tensorrt": (lambda v: isinstance(v, dict), "an object"),
    "weights_file": (lambda v: v is None or _str(v), "a file name inside the bundle or null"),
    DIGEST_KEY: (lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)), "a SHA-256 (64 hex digits)"),
}
REQUIRED = ("family", "input_size", "stages", "files")


def check_manifest(manifest: dict, where) -> None:
    """Raise :class:`BundleError` naming the first missing or malformed field of ``manifest``
    (read from ``where``)."""
    for key in REQUIRED:
        if key not in manifest:
            raise BundleError(f"bundle manifest {where} lacks '{key}': re-export the bundle")
    for key, (ok, what) in FIELDS.items():
        if key in manifest and not ok(manifest[key]):
            try:
                shown = json.dumps(manifest[key])
            except (RecursionError, ValueError):
                shown = type(manifest[key]).__name__
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise BundleError(f"bundle manifest {where}: '{key}' is {shown}, not {what}: re-export the bundle")
