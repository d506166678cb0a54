"""Sessions: one tracked video, SAM 2's video-predictor shape.

``Session.from_bundle(dir, backend=...)`` loads a verified bundle and runs its
family's step program on ONNX Runtime, TensorRT or (reference) PyTorch;
``start(frame, mask)`` then ``step(frame)`` per frame.  The inference state is
explicit: ``session.program`` holds the per-object target models, templates,
previous scores and refiner states, and the reuse-gate run length.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edgevos.errors import InputError
from edgevos.programs.base import StepResult

Result = StepResult
BACKENDS = ("onnxruntime", "tensorrt", "torch")


class Session:
    def __init__(self, program, bundle=None, backend=None):
        self.program = program
        self.bundle = bundle
        self.backend = backend if backend is not None else program.backend
        self._started = False
        self.governor = None  # edgevos.runtime.budget.FpsGovernor while a target FPS is set

    @property
    def target_fps(self) -> Optional[float]:
        """FPS budget mode: when set, tau is steered live to hold this frame rate with the least reuse
        (``governor.summary()`` tells the achieved FPS, reuse rate and tau over time)."""
        return None if self.governor is None else self.governor.target_fps

    @target_fps.setter
    def target_fps(self, value: Optional[float]):
        from edgevos.runtime.budget import FpsGovernor

        self.governor = None if value is None else FpsGovernor(float(value), tau_max=1.0)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_bundle(cls, bundle_dir, backend: str = "onnxruntime", precision: Optional[str] = None,
                    tau: float = 1.0, threads: Optional[int] = None, max_reuse: Optional[int] = None,
                    **program_kwargs) -> "Session":
        from edgevos.export.bundle import load_bundle
        from edgevos.models.registry import get_family

        bundle = load_bundle(bundle_dir)
        if backend in ("onnxruntime", "ort"):
            from edgevos.runtime.ort_backend import OrtBackend

            precision = precision or _best(bundle.precisions, ("int8-cpu", "fp32", "int8-trt"))
            be = OrtBackend(bundle, precision=precision, threads=threads)
        elif backend in ("tensorrt", "trt"):
            from edgevos.runtime.trt_backend import TrtBackend

            be = TrtBackend(bundle, precision=precision or "int8")
        elif backend == "torch":
            model = get_family(bundle.family).build(weights=_bundle_weights(bundle), input_size=bundle.input_size)
            from edgevos.runtime.backends import TorchBackend

            be = TorchBackend(model.stage_modules(), bundle.specs, threads=threads)
        else:
            raise InputError(f"unknown backend '{backend}': choose one of {list(BACKENDS)}")
        program = get_family(bundle.family).make_program(be, bundle.config, tau=tau, max_reuse=max_reuse, **program_kwargs)
        return cls(program, bundle, be)

    @classmethod
    def from_model(cls, model, tau: float = 1.0, threads: Optional[int] = None, max_reuse: Optional[int] = None,
                   family: str = "gfrtm", **program_kwargs) -> "Session":
        """The PyTorch reference: a model built by ``get_family(f).build(...)``."""
        import dataclasses

        from edgevos.models.registry import get_family
        from edgevos.runtime.backends import TorchBackend

        be = TorchBackend(model.stage_modules(), model.stage_specs(), threads=threads)
        cfg = dataclasses.asdict(model.config)
        program = get_family(family).make_program(be, cfg, tau=tau, max_reuse=max_reuse, **program_kwargs)
        return cls(program, None, be)

    # ------------------------------------------------------------------ API
    @property
    def tau(self) -> float:
        return self.program.tau

    @tau.setter
    def tau(self, value: float):
        self.program.tau = value

    @property
    def max_reuse(self):
        return self.program.max_reuse

    @max_reuse.setter
    def max_reuse(self, value):
        self.program.max_reuse = value

    @property
    def object_ids(self):
        return self.program.object_ids

    def start(self, frame: np.ndarray, mask: np.ndarray) -> StepResult:
        res = self.program.start(frame, mask)
        self._started = True
        return res

    def step(self, frame: np.ndarray) -> StepResult:
        if not self._started:
            raise InputError("step() called before start(): give the first frame and its mask to start()")
        if self.governor is None:
            return self.program.step(frame)
        self.program.tau = self.governor.tau
        res = self.program.step(frame)
        self.governor.observe(res.reused)
        return res

    def add_object(self, frame: np.ndarray, mask: np.ndarray) -> StepResult:
        """Add the objects of ``mask`` (ids not yet tracked) on ``frame``, which becomes a computed frame."""
        if not self._started:
            return self.start(frame, mask)
        return self.program.add_objects(frame, mask)

    def remove_object(self, obj_id: int) -> None:
        self.program.remove_object(obj_id)

    def reset(self) -> None:
        self.program.objects = []
        self._started = False


def _best(available, order):
    for p in order:
        if p in available:
            return p
    raise InputError(f"bundle has no precision usable by ONNX Runtime: {available}")


def _bundle_weights(bundle):
    path = bundle.manifest.get("weights_file")
    if not path:
        raise InputError(
            f"bundle {bundle.root} does not carry PyTorch weights: the torch backend needs them; "
            f"use --backend onnxruntime or export with the weights included"
        )
    from edgevos.errors import BundleError
    from edgevos.export.bundle import _safe_rel

    full = _safe_rel(bundle.root, path)  # no absolute paths, '..' or symlinks out of the bundle
    if path not in bundle.manifest.get("files", {}):
        raise BundleError(f"bundle {bundle.root}: weights file '{path}' has no SHA-256 in the manifest: re-export the bundle")
    return full
