"""ONNX Runtime backend: runs a bundle's stages (FP32 or either INT8 flavour).  Torch-free.

One InferenceSession per stage, full graph optimisation, a fixed number of
intra-op threads, and the CUDA / TensorRT execution providers when the
installed ONNX Runtime has them.  With a GPU provider (or ``io_binding=True``)
inputs and outputs go through IOBinding with preallocated output buffers, so no
per-call allocation happens.  ``run(stage, feeds, out={name: array})`` binds
the given arrays (ring-buffer slots) as output buffers: ONNX Runtime writes the
outputs there, and nothing is copied afterwards.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from edgevos.backend import Backend
from edgevos.bundle import EXPORT_PRECISIONS
from edgevos.errors import BundleError, InputError

#: the bundle precisions ONNX Runtime runs
PRECISIONS = EXPORT_PRECISIONS
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def default_providers(precision: str, available: Sequence[str]) -> list:
    """GPU providers first when present; TensorRT EP only for Q/DQ (int8-trt) or fp32 models."""
    order = []
    if "TensorrtExecutionProvider" in available and precision in ("int8-trt", "fp32"):
        order.append("TensorrtExecutionProvider")
    if "CUDAExecutionProvider" in available:
        order.append("CUDAExecutionProvider")
    order.append("CPUExecutionProvider")
    return order


class OrtBackend(Backend):
    """Run every stage of a bundle with ONNX Runtime.

    ``bundle`` is a :class:`edgevos.bundle.Bundle` or a bundle directory
    (verified on load).  ``threads`` sets intra-op threads per session (None:
    ONNX Runtime's default).
    """

    name = "ort"

    @classmethod
    def from_bundle(cls, bundle, precision: str, threads: Optional[int] = None) -> "OrtBackend":
        return cls(bundle, precision=precision, threads=threads)

    def __init__(
        self,
        bundle,
        precision: str = "fp32",
        threads: Optional[int] = None,
        providers: Optional[Sequence[str]] = None,
        io_binding: Optional[bool] = None,
    ):
        from edgevos.bundle import Bundle, load_bundle

        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        if precision not in PRECISIONS:
            raise InputError(f"ONNX Runtime precision '{precision}' is unknown: use one of {list(PRECISIONS)}")
        if precision not in bundle.precisions:
            raise BundleError(
                f"bundle {bundle.root} has no '{precision}' stages (it has {bundle.precisions}): "
                f"export it with --precision {precision}"
            )
        super().__init__(bundle.specs)
        self.bundle = bundle
        self.precision = precision
        self.name = f"ort-{precision}"
        import onnxruntime as ort
        self._ort = ort
        available = ort.get_available_providers()
        if providers is None:
            providers = default_providers(precision, available)
        else:
            providers = list(providers)
            missing = [p for p in providers if p not in available]
            if missing:
                raise InputError(f"ONNX Runtime providers {missing} are not available here; available: {available}")
        self.providers = providers
        self.sessions = {}
        self.stage_precision: Dict[str, str] = {}
        for spec in bundle.specs:
            path = bundle.stage_path(spec.name, precision)
            if path.suffix != ".onnx":
                raise BundleError(f"stage '{spec.name}' {precision} file {path.name} is not ONNX")
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.inter_op_num_threads = 1
            if threads:
                so.intra_op_num_threads = int(threads)
            so.log_severity_level = 3
            try:
                sess = ort.InferenceSession(str(path), so, providers=providers)
            except Exception as exc:
                raise BundleError(f"stage '{spec.name}': ONNX Runtime cannot load {path}: {exc}") from exc
            self.sessions[spec.name] = sess
            self.stage_precision[spec.name] = bundle.stage_precision(spec.name, precision)
        gpu = any(p in GPU_PROVIDERS for p in self.sessions[bundle.specs[0].name].get_providers()) if bundle.specs else False
        self.io_binding = gpu if io_binding is None else bool(io_binding)
        self._bindings = {}
        self._cpu_bindings = {}
        self._outputs = {}
        if self.io_binding:
            device = "cuda" if gpu else "cpu"
            for spec in bundle.specs:
                sess = self.sessions[spec.name]
                binding = sess.io_binding()
                outs = {}
                for t in spec.outputs:
                    val = ort.OrtValue.ortvalue_from_shape_and_type(list(t.shape), np.dtype(t.dtype).type, device, 0)
                    binding.bind_ortvalue_output(t.name, val)
                    outs[t.name] = val
                self._bindings[spec.name] = binding
                self._outputs[spec.name] = outs

    def _run_into(self, spec, feeds, out):
        if self.io_binding:  # device outputs: copied to the host anyway
            return super()._run_into(spec, feeds, out)
        sess = self.sessions[spec.name]
        binding = self._cpu_bindings.get(spec.name)
        if binding is None:
            binding = self._cpu_bindings[spec.name] = sess.io_binding()
        inputs = [np.ascontiguousarray(feeds[t.name], dtype=t.dtype) for t in spec.inputs]  # alive until run
        for t, a in zip(spec.inputs, inputs):
            binding.bind_cpu_input(t.name, a)  # bound in place, not copied
        res = {}
        for t in spec.outputs:
            a = out.get(t.name)
            if a is None:
                a = np.empty(t.shape, t.dtype)
            binding.bind_output(t.name, "cpu", 0, a.dtype, list(a.shape), a.ctypes.data)
            res[t.name] = a
        sess.run_with_iobinding(binding)
        return res

    def _run(self, spec, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        arrays = {t.name: np.ascontiguousarray(feeds[t.name], dtype=t.dtype) for t in spec.inputs}
        if not self.io_binding:
            outs = self.sessions[spec.name].run(spec.output_names, arrays)
            return dict(zip(spec.output_names, outs))
        binding = self._bindings[spec.name]
        for name, a in arrays.items():
            binding.bind_cpu_input(name, a)
        self.sessions[spec.name].run_with_iobinding(binding)
        # copies: the step program may keep outputs (ring buffers) across calls
        return {name: val.numpy().copy() for name, val in self._outputs[spec.name].items()}

