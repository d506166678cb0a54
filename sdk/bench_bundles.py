"""The bundles ``edgevos bench`` runs: exported once per family (in a spawned process) and cached
under ``OUT/bundles`` by weights, family, preset, size and calibration; TensorRT engines built into them."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

from edgevos.errors import DependencyError, EdgevosError

log = logging.getLogger(__name__)


def weights_sha256(path) -> str:
    from edgevos.bundle import sha256

    return sha256(path)


def bundle_name(family: str, preset: Optional[str], onnx_precisions, size) -> str:
    tag = "+".join(p for p in onnx_precisions if p != "fp32") or "fp32"
    fam = family + (f"-{preset}" if preset else "")
    return f"{fam}-{tag}-{size[0]}x{size[1]}"


def ensure_bundle(out: Path, family: str, preset: Optional[str], weights_path: Path, onnx_precisions, size,
                  calib: str, threads: Optional[int], rebuild: bool = False) -> Path:
    """A bundle under ``out/bundles`` holding ``onnx_precisions`` for these weights: reused when a cached
    one matches (same weights SHA-256, family, preset, size), else exported by
    :func:`~edgevos.export.exporter.export_bundle` in a child process."""
    from edgevos.bundle import load_bundle

    root = out / "bundles"
    root.mkdir(parents=True, exist_ok=True)
    key = {"family": family, "preset": preset, "input_size": list(size), "weights_sha256": weights_sha256(weights_path),
           "calib": calib}
    if not rebuild:
        for side in sorted(root.glob("*.source.json")):
            try:
                info = json.loads(side.read_text())
                cand = root / side.name[: -len(".source.json")]
                if all(info.get(k) == v for k, v in key.items()):
                    b = load_bundle(cand)
                    if all(p in b.precisions for p in onnx_precisions):
                        log.info(f"[bench] reusing bundle {cand}")
                        return cand
            except (ValueError, OSError, EdgevosError):
                continue
    name = bundle_name(family, preset, onnx_precisions, size)
    target = root / name
    if target.exists():
        import shutil

        shutil.rmtree(target)
    side = root / f"{name}.source.json"
    side.unlink(missing_ok=True)
    from edgevos.export.exporter import export_bundle

    log.info(f"[bench] exporting {name} ({', '.join(onnx_precisions)}) in a child process")
    t0 = time.perf_counter()
    export_log = root / f"{name}.export.log"
    try:  # a child process keeps this one's torch threads and GStreamer state as they are
        export_bundle(target, family, weights=str(weights_path), precisions=onnx_precisions, calib=calib,
                      calib_frames=48, input_size=size, heldout_frames=20, threads=threads or 1, progress=False,
                      isolate=True, log=export_log)
    except EdgevosError as exc:
        raise EdgevosError(f"export of {name} failed: {exc}; see {export_log}") from None
    side.write_text(json.dumps(key, indent=2))
    log.info(f"[bench] exported {target} in {time.perf_counter() - t0:.0f} s")
    return target


def build_engines(bundle_dir: Path, precision: str):
    """TensorRT engines of one precision for a cached bundle (Jetson / NVIDIA GPU), built here as
    ``edgevos build`` builds them; returns the reloaded bundle."""
    from edgevos.bundle import load_bundle
    from edgevos.export.tensorrt import BuildOptions, build_bundle_engines
    from edgevos.runtime.trt_backend import available

    reason = available()
    if reason is not None:
        raise DependencyError(f"TensorRT cannot be used on this machine ({reason}): build the engines on the "
                              f"target device ('edgevos build {bundle_dir} --precision {precision}')")
    log.info(f"[bench] building TensorRT {precision} engines for {bundle_dir}")
    build_bundle_engines(bundle_dir, BuildOptions(precision))
    return load_bundle(bundle_dir)


def stage_files_mb(bundle, precision: str) -> float:
    """Megabytes of the distinct stage files a bundle precision loads."""
    files = {bundle.stage_path(s, precision) for s in bundle.stage_names}
    return sum(p.stat().st_size for p in files) / 1e6
