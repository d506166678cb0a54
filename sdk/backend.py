"""Backends run a model's stages by name; the registry of backends.

Every backend implements :class:`Backend`: ``run(stage, feeds) -> outputs`` on
numpy arrays, validated against the stage's :class:`~edgevos.stages.StageSpec`.
The same step program runs on any backend, so parity between backends is a
test of stages alone.  :class:`TorchBackend` (the PyTorch reference) lives here;
the others are one module each, named in :data:`BACKENDS` and imported on use::

    BACKENDS["mybackend"] = BackendEntry("mybackend", "mypackage.runner:MyBackend", ("fp32",), "onnx")

An output may also be an array that lives on an accelerator and reads like a
read-only numpy array (TensorRT's :class:`~edgevos.runtime.trt_backend.DeviceArray`):
it is copied to the host when read, and fed back to the backend that made it, it
never leaves the device.  A step program treats outputs as read-only arrays and
passes them on unchanged, so what it only forwards is never copied.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np

from edgevos.errors import InputError
from edgevos.stages import StageSpec


class Backend:
    """Interface: run stages by name on numpy arrays."""

    name = "base"

    def __init__(self, specs: Iterable[StageSpec]):
        self.specs: Dict[str, StageSpec] = {s.name: s for s in specs}
        self.last_ms: Dict[str, float] = {}

    def has(self, stage: str) -> bool:
        return stage in self.specs

    def spec(self, stage: str) -> StageSpec:
        try:
            return self.specs[stage]
        except KeyError:
            raise InputError(
                f"backend '{self.name}' has no stage '{stage}'; it has {sorted(self.specs)}"
            ) from None

    def run(self, stage: str, feeds: Mapping[str, np.ndarray],
            out: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """Run one stage.  ``out`` names outputs to write into given arrays (e.g. ring-buffer
        slots from ``RingBuffer.reserve()``): C-contiguous, writable, of the output's shape and
        dtype; the returned dict then holds those very arrays."""
        spec = self.spec(stage)
        spec.check_feeds(feeds)
        if out:
            check_out(spec, out)
        t0 = time.perf_counter()
        res = self._run_into(spec, feeds, out) if out else self._run(spec, feeds)
        self.last_ms[stage] = (time.perf_counter() - t0) * 1e3
        return res

    @classmethod
    def from_bundle(cls, bundle, precision: str, threads: Optional[int] = None) -> "Backend":
        """This backend on a loaded bundle's stages of one precision (``threads``: CPU
        backends override this to use it)."""
        return cls(bundle, precision=precision)

    def _run(self, spec: StageSpec, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def _run_into(self, spec: StageSpec, feeds: Mapping[str, np.ndarray],
                  out: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Outputs into ``out``; backends that can write there directly override this."""
        res = self._run(spec, feeds)
        for name, dst in out.items():
            np.copyto(dst, res[name])
            res[name] = dst
        return res


def check_out(spec: StageSpec, out: Mapping[str, np.ndarray]) -> None:
    """``out`` arrays must be writable C-contiguous buffers of the stage outputs' shapes and dtypes."""
    outputs = {t.name: t for t in spec.outputs}
    for name, a in out.items():
        t = outputs.get(name)
        if t is None:
            raise InputError(f"stage '{spec.name}' has no output '{name}' to write into; outputs: {spec.output_names}")
        if not isinstance(a, np.ndarray) or tuple(a.shape) != tuple(t.shape) or a.dtype != np.dtype(t.dtype):
            raise InputError(
                f"stage '{spec.name}' output '{name}' is {t.dtype}{list(t.shape)}: the array to write it into is "
                f"{getattr(a, 'dtype', type(a).__name__)}{list(getattr(a, 'shape', ()))}"
            )
        if not (a.flags.c_contiguous and a.flags.writeable):
            raise InputError(f"stage '{spec.name}' output '{name}': the array to write it into must be writable and "
                             "C-contiguous (a ring slot from reserve() is)")


class TorchBackend(Backend):
    """The reference: runs the PyTorch stage modules in FP32 on the CPU."""

    name = "torch"

    def __init__(self, modules: Mapping[str, "object"], specs: Iterable[StageSpec], threads: Optional[int] = None):
        super().__init__(specs)
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.modules = {k: m.eval() for k, m in modules.items()}
        missing = set(self.specs) - set(self.modules)
        if missing:
            raise InputError(f"no module for stages {sorted(missing)}")

    @classmethod
    def from_bundle(cls, bundle, precision: str = "fp32", threads: Optional[int] = None) -> "TorchBackend":
        """The bundle's family built from the PyTorch weights the bundle carries."""
        from edgevos.models.registry import get_family

        model = get_family(bundle.family).build(weights=bundle.weights_path(), input_size=bundle.input_size)
        return cls(model.stage_modules(), bundle.specs, threads=threads)

    def _run(self, spec, feeds):
        return run_module(self.modules[spec.name], spec, feeds)


def run_module(module, spec: StageSpec, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Run a PyTorch stage module on numpy feeds: the reference outputs of a stage.

    Args:
        module: the stage's ``torch.nn.Module``, called with ``spec.input_names`` in order.
        spec: the stage's inputs and outputs.
        feeds: input name -> array.

    Returns:
        Output name -> array (CPU, detached).
    """
    import torch

    args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in spec.input_names]
    with torch.inference_mode():
        outs = module(*args)
    if not isinstance(outs, (tuple, list)):
        outs = (outs,)
    return {n: o.detach().cpu().numpy() for n, o in zip(spec.output_names, outs)}


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class BackendEntry:
    """A backend by name: where its class is, what it loads from a bundle.

    ``target`` is ``"module:Class"`` (imported on use); the class implements
    :class:`Backend` and ``from_bundle(bundle, precision, threads)``.  ``precisions``
    are the values its ``precision`` takes, the default first; ``artifact`` is what it
    loads: ``"onnx"`` (the bundle's ONNX files of that precision), ``"engine"``
    (TensorRT engines built from them) or ``"weights"`` (the PyTorch checkpoint).
    """

    name: str
    target: str
    precisions: Tuple[str, ...]
    artifact: str
    aliases: Tuple[str, ...] = ()

    def load(self) -> type:
        import importlib

        module, attr = self.target.split(":")
        return getattr(importlib.import_module(module), attr)

    def default_precision(self, bundle) -> str:
        """The first of ``precisions`` this backend can load from ``bundle``."""
        if self.artifact != "onnx":
            return self.precisions[0]
        for p in self.precisions:
            if p in bundle.precisions:
                return p
        raise InputError(f"bundle {bundle.root} has no precision the {self.name} backend loads "
                         f"({list(self.precisions)}); it has {bundle.precisions}: re-export it with one of them")

    def open(self, bundle, precision: Optional[str] = None, threads: Optional[int] = None) -> Backend:
        """The backend on ``bundle`` (a loaded :class:`~edgevos.bundle.Bundle`)."""
        return self.load().from_bundle(bundle, precision or self.default_precision(bundle), threads=threads)


BACKENDS: Dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry("onnxruntime", "edgevos.runtime.ort_backend:OrtBackend",
                                ("int8-cpu", "fp32", "int8-trt"), "onnx", aliases=("ort",)),
    "tensorrt": BackendEntry("tensorrt", "edgevos.runtime.trt_backend:TrtBackend", ("int8", "fp16", "best"), "engine",
                             aliases=("trt",)),
    "torch": BackendEntry("torch", "edgevos.backend:TorchBackend", ("fp32",), "weights"),
}


def get_backend(name: str) -> BackendEntry:
    """The registry entry for a backend name or alias."""
    for entry in BACKENDS.values():
        if name == entry.name or name in entry.aliases:
            return entry
    raise InputError(f"unknown backend '{name}': choose one of {list(BACKENDS)}")


def open_backend(name: str, bundle, precision: Optional[str] = None, threads: Optional[int] = None) -> Backend:
    """Backend ``name`` on a bundle (a directory or a loaded bundle).

    Args:
        name: a registered backend (``onnxruntime``, ``tensorrt``, ``torch``) or alias.
        bundle: bundle directory or :class:`~edgevos.bundle.Bundle`.
        precision: which of the bundle's precisions to run (default: the backend's first it can load).
        threads: CPU threads, for backends that use them.

    Returns:
        The backend, ready to ``run`` stages.
    """
    entry = get_backend(name)
    if not hasattr(bundle, "precisions"):
        from edgevos.bundle import load_bundle

        bundle = load_bundle(bundle)
    return entry.open(bundle, precision, threads)
