"""Bundles: a directory with ``manifest.json`` and the stage files.  Torch-free.

The manifest records the family, preset and config, input size and
normalisation, each stage's I/O signature and file per precision (and the
precision the stage really runs in, e.g. ``fp32`` for a stage kept float), the
calibration summary, the parity report, tool versions, the SHA-256 of every
file and of the manifest itself (:mod:`edgevos.manifest_schema`).  :func:`load_bundle`
checks the manifest's fields and verifies all of it before anything runs.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from edgevos import __version__
from edgevos.errors import BundleError
from edgevos.files import is_temporary, write_json
from edgevos.manifest_schema import DIGEST_KEY, check_manifest, manifest_digest
from edgevos.stages import StageSpec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: the ONNX precisions an export writes on request (``export_bundle(precisions=...)``; fp32 always)
#: and ONNX Runtime runs: fp32, INT8 for CPUs (ONNX Runtime), INT8 as Q/DQ graphs for TensorRT
EXPORT_PRECISIONS = ("fp32", "int8-cpu", "int8-trt")
#: the int8-trt graphs with FP16 float compute (``--trt-float fp16``; ``<stage>.int8-trt-f16.onnx``),
#: what TensorRT int8 engines are built from where a bundle has them
F16_PRECISION = "int8-trt-f16"
#: ONNX precisions a bundle can hold; TensorRT engines use "trt-<int8|fp16|best>"
ONNX_PRECISIONS = EXPORT_PRECISIONS + (F16_PRECISION,)
TOOLS = ("torch", "onnx", "onnxruntime", "onnxslim", "tensorrt", "numpy")


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tool_versions() -> Dict[str, Optional[str]]:
    """Installed versions from package metadata (imports nothing)."""
    from importlib import metadata

    out: Dict[str, Optional[str]] = {"edgevos": __version__}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _safe_rel(root: Path, rel: str) -> Path:
    """Resolve a manifest path inside the bundle; reject absolute paths and escapes."""
    p = PurePosixPath(rel)
    if p.is_absolute() or os.path.isabs(rel) or ".." in p.parts or rel.startswith("~") or not rel:
        raise BundleError(
            f"bundle {root}: manifest path '{rel}' points outside the bundle directory; "
            f"bundles may only reference their own files: re-export the bundle"
        )
    full = (root / Path(*p.parts)).resolve()
    if root.resolve() not in full.parents:
        raise BundleError(f"bundle {root}: manifest path '{rel}' resolves outside the bundle ({full}): re-export the bundle")
    return full


def _rel(root: Path, path) -> str:
    path = Path(path)
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise BundleError(f"file {path} is not inside the bundle directory {root}") from None


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_bundle(
    out_dir,
    family: str,
    config: Mapping,
    input_size: Sequence[int],
    normalization: Mapping,
    specs: Sequence[StageSpec],
    files: Mapping[str, Mapping[str, object]],
    calibration: Optional[Mapping] = None,
    parity: Optional[Mapping] = None,
    preset: Optional[str] = None,
    stage_precision: Optional[Mapping[str, Mapping[str, str]]] = None,
    quantization: Optional[Mapping] = None,
    extra: Optional[Mapping] = None,
) -> Path:
    """Write ``manifest.json`` for the stage files in ``out_dir``; returns its path.

    ``files`` is ``{stage: {precision: path}}``; paths outside ``out_dir`` are
    copied in.  ``stage_precision`` is ``{precision: {stage: real precision}}``
    (defaults to the precision itself).  The parity report is also written as
    ``parity.json``.  Every file in the directory gets a SHA-256.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in specs]
    for stage in files:
        if stage not in names:
            raise BundleError(f"files given for stage '{stage}', which is not among the stages {names}")
    precisions: List[str] = []
    for stage in names:
        for prec in (files.get(stage) or {}):
            if prec not in precisions:
                precisions.append(prec)
    stages = []
    for spec in specs:
        entry = spec.to_dict()
        entry["files"] = {}
        for prec, path in (files.get(spec.name) or {}).items():
            path = Path(path)
            if not path.is_file():
                raise BundleError(f"stage '{spec.name}' {prec} file {path} does not exist")
            if root.resolve() not in path.resolve().parents:
                dest = root / path.name
                shutil.copy2(path, dest)
                path = dest
            entry["files"][prec] = _rel(root, path)
        entry["precision"] = {
            prec: (stage_precision or {}).get(prec, {}).get(spec.name, prec) for prec in entry["files"]
        }
        stages.append(entry)
    for prec in precisions:
        lacking = [s["name"] for s in stages if prec not in s["files"]]
        if lacking:
            raise BundleError(f"precision '{prec}' has no file for stages {lacking}; every stage needs one")
    if parity is not None:
        (root / "parity.json").write_text(json.dumps(parity, indent=2, default=_json_default))
    manifest = {
        "format_version": FORMAT_VERSION,
        "edgevos_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "family": family,
        "preset": preset,
        "config": dict(config),
        "input_size": [int(v) for v in input_size],
        "normalization": dict(normalization),
        "precisions": precisions,
        "stages": stages,
        "calibration": dict(calibration or {}),
        "quantization": dict(quantization or {}),
        "parity": parity,
        "tools": tool_versions(),
    }
    if extra:
        manifest.update(extra)
    return _write_manifest(root, manifest)


def _write_manifest(root: Path, manifest: dict) -> Path:
    manifest["files"] = {
        p.relative_to(root).as_posix(): sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    plain = json.loads(json.dumps(manifest, default=_json_default))  # what a reader will see
    manifest[DIGEST_KEY] = plain[DIGEST_KEY] = manifest_digest(plain)
    return write_json(root / MANIFEST, plain, indent=2)


def add_files(bundle_dir, stage_files: Mapping[str, Mapping[str, object]], extra_files: Sequence = (), info: Optional[Mapping] = None) -> Path:
    """Register new files (e.g. TensorRT engines, a build script) in an existing bundle.

    ``stage_files`` is ``{stage: {precision: path}}``; ``extra_files`` are other
    files inside the bundle; ``info`` is merged into the manifest (e.g. build
    settings).  Hashes are recomputed over the whole directory, after the
    existing ones were verified.
    """
    bundle = load_bundle(bundle_dir, allow_extra=[Path(p) for s in stage_files.values() for p in s.values()] + [Path(p) for p in extra_files])
    root = bundle.root
    manifest = bundle.manifest
    by_name = {s["name"]: s for s in manifest["stages"]}
    for stage, per in stage_files.items():
        if stage not in by_name:
            raise BundleError(f"bundle {root} has no stage '{stage}'; it has {sorted(by_name)}")
        for prec, path in per.items():
            by_name[stage]["files"][prec] = _rel(root, path)
            by_name[stage].setdefault("precision", {})[prec] = prec
            if prec not in manifest["precisions"]:
                manifest["precisions"].append(prec)
    for p in extra_files:
        _rel(root, p)
    if info:
        manifest.update(info)
    return _write_manifest(root, manifest)


def copy_bundle(src, dest, keep: Callable[[str], bool] = lambda precision: True) -> Path:
    """Copy a verified bundle to ``dest`` (a new directory) with only the stage files of the
    precisions ``keep`` accepts; files that belong to dropped TensorRT engine sets (layer
    information, timing caches, build scripts) stay behind.  Returns ``dest``."""
    bundle = load_bundle(src)
    root, dest = bundle.root, Path(dest)
    if dest.exists():
        raise BundleError(f"cannot copy bundle {root} to {dest}: it exists; give a new directory")
    manifest = json.loads(json.dumps(bundle.manifest))
    precisions = [p for p in manifest.get("precisions", []) if keep(p)]
    dropped = set(manifest.get("precisions", [])) - set(precisions)
    kept_files = set()
    for stage in manifest["stages"]:
        stage["files"] = {p: f for p, f in stage.get("files", {}).items() if p in precisions}
        if "precision" in stage:
            stage["precision"] = {p: v for p, v in stage["precision"].items() if p in precisions}
        kept_files.update(stage["files"].values())
    stage_files = {f for s in bundle.manifest["stages"] for f in s.get("files", {}).values()}
    engine_extras = (".engine.layers.json", ".cache", ".sh")
    if any(p.startswith("trt-") for p in dropped):
        info = dict(manifest.get("tensorrt") or {})
        for p in dropped:
            info.pop(p, None)
        manifest["tensorrt"] = info
    manifest["precisions"] = precisions
    manifest.pop(DIGEST_KEY, None)
    dest.mkdir(parents=True)
    for rel in manifest["files"]:
        if rel in stage_files and rel not in kept_files:
            continue
        if rel not in stage_files and dropped and rel.endswith(engine_extras):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_safe_rel(root, rel), target)
    _write_manifest(dest, manifest)
    return dest


@dataclass
class Bundle:
    root: Path
    manifest: dict
    specs: List[StageSpec]

    @property
    def family(self) -> str:
        return self.manifest["family"]

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def input_size(self):
        return tuple(self.manifest["input_size"])

    @property
    def normalization(self) -> dict:
        return self.manifest.get("normalization", {})

    @property
    def precisions(self) -> List[str]:
        return list(self.manifest.get("precisions", []))

    @property
    def stage_names(self) -> List[str]:
        return [s.name for s in self.specs]

    def _stage(self, stage: str) -> dict:
        for s in self.manifest["stages"]:
            if s["name"] == stage:
                return s
        raise BundleError(f"bundle {self.root} has no stage '{stage}'; it has {self.stage_names}")

    def weights_path(self) -> Path:
        """The PyTorch checkpoint the bundle carries (hash-verified, inside the bundle)."""
        from edgevos.errors import InputError

        path = self.manifest.get("weights_file")
        if not path:
            raise InputError(
                f"bundle {self.root} does not carry PyTorch weights: the torch backend needs them; "
                f"use --backend onnxruntime or export with the weights included"
            )
        full = _safe_rel(self.root, path)  # no absolute paths, '..' or symlinks out of the bundle
        if path not in self.manifest.get("files", {}):
            raise BundleError(f"bundle {self.root}: weights file '{path}' has no SHA-256 in the manifest: "
                              "re-export the bundle")
        return full

    def stage_path(self, stage: str, precision: str) -> Path:
        files = self._stage(stage).get("files", {})
        if precision not in files:
            raise BundleError(
                f"bundle {self.root} has no '{precision}' file for stage '{stage}'; it has "
                f"{sorted(files)}: export with --precision {precision}"
            )
        return _safe_rel(self.root, files[precision])

    def stage_precision(self, stage: str, precision: str) -> str:
        """The precision a stage really runs in under ``precision`` (``fp32`` if kept float)."""
        self.stage_path(stage, precision)
        return self._stage(stage).get("precision", {}).get(precision, precision)

    def spec(self, stage: str) -> StageSpec:
        for s in self.specs:
            if s.name == stage:
                return s
        raise BundleError(f"bundle {self.root} has no stage '{stage}'; it has {self.stage_names}")


def load_bundle(path, verify: bool = True, allow_extra: Sequence = ()) -> Bundle:
    """Read and verify a bundle directory (or its manifest.json).

    Raises BundleError when the manifest is missing or unreadable, was written
    by a newer format, references paths outside the bundle, or when any file is
    missing, modified, or not listed in the manifest.

    Args:
        path: the bundle directory, or its ``manifest.json``.
        verify: check the manifest's digest, every file's SHA-256, and that no file is unlisted.
        allow_extra: files that may sit in the bundle without being listed.

    Returns:
        The :class:`Bundle`.
    """
    root = Path(path)
    if root.name == MANIFEST and root.is_file():
        root = root.parent
    mpath = root / MANIFEST
    if root.exists() and not root.is_dir():
        raise BundleError(f"bundle {root} is a file, not a bundle directory: pass the --out directory of 'edgevos export'")
    if not root.is_dir():
        raise BundleError(f"bundle directory {root} does not exist: pass the --out directory of 'edgevos export'")
    if not mpath.is_file():
        raise BundleError(f"{root} is not a bundle: it has no {MANIFEST}; export one with 'edgevos export'")
    try:
        manifest = json.loads(mpath.read_text())
    except RecursionError:
        raise BundleError(f"bundle manifest {mpath} is nested too deeply to be a manifest: re-export the bundle") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"bundle manifest {mpath} is unreadable ({exc}): re-export the bundle") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle manifest {mpath} is not a JSON object: re-export the bundle")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"bundle manifest {mpath} has no integer format_version: re-export the bundle")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle {root} has format_version {version} (written by edgevos "
            f"{manifest.get('edgevos_version', '?')}), newer than this edgevos {__version__} reads "
            f"(<= {FORMAT_VERSION}): upgrade edgevos (pip install -U edgevos) or re-export with this version"
        )
    check_manifest(manifest, mpath)
    try:
        specs = [StageSpec.from_dict(s) for s in manifest["stages"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"bundle manifest {mpath} has a malformed stage entry ({exc}): re-export the bundle") from exc
    for s in manifest["stages"]:
        for rel in s.get("files", {}).values():
            _safe_rel(root, rel)
            if rel not in manifest["files"]:
                raise BundleError(f"bundle {root}: stage file '{rel}' has no SHA-256 in the manifest: re-export the bundle")
    if verify:
        _verify_digest(root, manifest)
        _verify_files(root, manifest, allow_extra)
    return Bundle(root, manifest, specs)


def _verify_digest(root: Path, manifest: dict) -> None:
    """The manifest's own SHA-256 (bundles written before it was recorded have none)."""
    if DIGEST_KEY not in manifest:
        return
    try:
        digest = manifest_digest(manifest)
    except (RecursionError, ValueError) as exc:
        raise BundleError(f"bundle {root}: {MANIFEST} cannot be hashed ({type(exc).__name__}): re-export the bundle") from None
    if digest != manifest[DIGEST_KEY]:
        raise BundleError(
            f"bundle {root}: {MANIFEST} does not match its {DIGEST_KEY} (a field was edited after export, "
            f"e.g. its config, input size or stages): re-export the bundle"
        )


def _verify_files(root: Path, manifest: dict, allow_extra: Sequence = ()) -> None:
    listed = manifest["files"]
    allowed = {Path(p).resolve() for p in allow_extra}
    for rel, digest in listed.items():
        full = _safe_rel(root, rel)
        if full.resolve() in allowed:  # being replaced (e.g. a rebuilt engine)
            continue
        if not full.is_file():
            raise BundleError(
                f"bundle {root}: file '{rel}' listed in the manifest is missing: the bundle is "
                f"incomplete; copy it whole or re-export it"
            )
        try:
            actual = sha256(full)
        except OSError as exc:
            raise BundleError(
                f"bundle {root}: file '{rel}' cannot be read ({exc.strerror or exc}): make the bundle readable "
                f"by this user (chmod -R a+rX {root}) or copy it whole to a readable place"
            ) from None
        if actual != digest:
            raise BundleError(
                f"bundle {root}: file '{rel}' does not match its SHA-256 in the manifest (modified "
                f"after export or corrupted in transfer): re-export the bundle"
            )
    for p in sorted(root.rglob("*")):
        # symlinks count too (to a directory outside, or dangling): export never makes them
        if not (p.is_file() or p.is_symlink()) or p.name in (MANIFEST, MANIFEST + ".tmp") \
                or is_temporary(p.name, MANIFEST):
            continue
        rel = p.relative_to(root).as_posix()
        if rel not in listed and p.resolve() not in allowed:
            raise BundleError(
                f"bundle {root}: file '{rel}' is not listed in the manifest (added after export); "
                f"remove it, or re-export the bundle"
            )
