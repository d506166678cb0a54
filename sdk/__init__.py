"""edgevos: semi-supervised video object segmentation on NVIDIA Jetson.

The public API::

    from edgevos import Session, export_bundle, run, evaluate, benchmark

    export_bundle("bundles/gfrtm", "gfrtm", weights="default", precisions=["fp32", "int8-cpu"])
    summary = run("file://clip.mp4", ["file://out.mp4"], bundle="bundles/gfrtm", init_box=[(250, 100, 150, 300)])
    session = Session.from_bundle("bundles/gfrtm", tau=0.85)   # frame by frame: start(rgb, mask), step(rgb)

Importing the package never imports torch, GStreamer or TensorRT: those are
loaded where they are used, so a deployment needs only numpy and ONNX Runtime
(or TensorRT).  The names below are resolved on first use.
"""
__version__ = "0.1.0"

from edgevos.errors import EdgevosError  # noqa: E402

#: public name -> "module:attribute", imported on first access
_API = {
    "Session": "edgevos.runtime.session:Session",
    "StepResult": "edgevos.programs.base:StepResult",
    "export_bundle": "edgevos.export.exporter:export_bundle",
    "load_bundle": "edgevos.bundle:load_bundle",
    "run": "edgevos.runtime.pipeline:run",
    "run_pipeline": "edgevos.runtime.pipeline:run_pipeline",
    "RunSummary": "edgevos.runtime.pipeline:RunSummary",
    "open_source": "edgevos.runtime.sources:open_source",
    "open_sink": "edgevos.runtime.sinks:open_sink",
    "gstreamer": "edgevos.runtime.sources:gst",
    "evaluate": "edgevos.evaluate_model:evaluate",
    "benchmark": "edgevos.bench:benchmark",
    "build_model": "edgevos.models.registry:build_model",
}

__all__ = ["EdgevosError", "__version__", *_API]


def __getattr__(name):
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'edgevos' has no attribute '{name}'")
    import importlib

    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
