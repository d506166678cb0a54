"""TensorRT backend: runs a bundle's engines (built by ``edgevos build``).  Torch-free.

Needs TensorRT 10.x and cuda-python (``pip install 'edgevos[trt]'``; on a Jetson
TensorRT comes with JetPack).  Per stage: one deserialised engine and execution
context, page-locked host buffers and device buffers allocated once, tensor
addresses set once; a call copies inputs host->device asynchronously on the
backend's CUDA stream, enqueues ``execute_async_v3`` and copies outputs back,
then synchronises the stream.
"""
from __future__ import annotations

import ctypes
from typing import Dict, Mapping, Optional

import numpy as np

from edgevos.errors import BundleError, SourceError, require
from edgevos.backend import Backend


def _check(result, what: str):
    """cuda-python calls return (err, *values); raise on error, return the values."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise SourceError(f"CUDA error {err} in {what}")
    return rest[0] if len(rest) == 1 else tuple(rest)


def _cudart():
    from edgevos.export.tensorrt import _cudart as load

    return load()


class _StageEngine:
    def __init__(self, trt, cudart, runtime, path, spec, stream):
        self.cudart = cudart
        self.spec = spec
        self.stream = stream
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BundleError(
                f"TensorRT cannot deserialise {path.name}: it was built for another TensorRT version or GPU; "
                f"rebuild with 'edgevos build'"
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        self.host: Dict[str, np.ndarray] = {}
        self.device: Dict[str, int] = {}
        self._host_ptrs = []
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        want = set(spec.input_names) | set(spec.output_names)
        if set(names) != want:
            raise BundleError(f"engine {path.name} has tensors {sorted(names)} but stage '{spec.name}' needs {sorted(want)}")
        for name in names:
            shape = tuple(engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            hptr = _check(cudart.cudaMallocHost(nbytes), "cudaMallocHost")
            self._host_ptrs.append(hptr)
            buf = (ctypes.c_byte * nbytes).from_address(int(hptr))
            self.host[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
            dptr = _check(cudart.cudaMalloc(nbytes), "cudaMalloc")
            self.device[name] = int(dptr)
            self.context.set_tensor_address(name, int(dptr))

    def run(self, feeds: Mapping[str, np.ndarray], out: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """Outputs are copied out of the page-locked staging buffers, into ``out``'s arrays where given."""
        cudart = self.cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.spec.input_names:
            host = self.host[name]
            np.copyto(host, feeds[name], casting="same_kind")
            _check(cudart.cudaMemcpyAsync(self.device[name], host.ctypes.data, host.nbytes, h2d, self.stream), "H2D copy")
        if not self.context.execute_async_v3(int(self.stream)):
            raise SourceError(f"TensorRT execute_async_v3 failed for stage '{self.spec.name}'")
        for name in self.spec.output_names:
            host = self.host[name]
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, self.device[name], host.nbytes, d2h, self.stream), "D2H copy")
        _check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        out = out or {}
        res = {}
        for name in self.spec.output_names:
            dst = out.get(name)
            if dst is None:
                res[name] = self.host[name].copy()
            else:
                np.copyto(dst, self.host[name])
                res[name] = dst
        return res

    def free(self):
        for p in self.device.values():
            self.cudart.cudaFree(p)
        for p in self._host_ptrs:
            self.cudart.cudaFreeHost(p)
        self.device, self._host_ptrs = {}, []


def engine_mismatch(bundle, key: str, trt_version: str, gpu: str) -> Optional[str]:
    """Why the ``key`` engines of ``bundle`` cannot run with this TensorRT and GPU, or None.

    A TensorRT engine only deserialises with the TensorRT version it was built
    with, on the GPU model it was built for.  Both are recorded in each engine's
    file name (``<stage>.<precision>.trt<ver>.<gpu>.<H>x<W>.engine``); engines
    named otherwise are left to TensorRT to judge.  ``gpu`` 'unknown' on either
    side skips the GPU comparison.
    """
    from edgevos.export.tensorrt import parse_engine_name, short_version, slug

    here_ver, here_gpu = short_version(trt_version), slug(gpu)
    for spec in bundle.specs:
        info = parse_engine_name(bundle.stage_path(spec.name, key).name)
        if info is None:
            continue
        built_ver, built_gpu = info["ver"], info["gpu"]
        if built_ver != "unknown" and built_ver != here_ver:
            return (f"engine for stage '{spec.name}' was built with TensorRT {built_ver} but this is TensorRT "
                    f"{here_ver}; engines only load with the version that built them")
        if "unknown" not in (built_gpu, here_gpu) and built_gpu != here_gpu:
            return (f"engine for stage '{spec.name}' was built for GPU '{built_gpu}' but this GPU is "
                    f"'{here_gpu}'; engines only run on the GPU model they were built for")
    return None


class TrtBackend(Backend):
    """Run a bundle's TensorRT engines: ``precision`` is a built engine set, e.g.
    ``int8``, ``fp16``, ``best`` or ``int8-dla0`` (manifest key ``trt-<precision>``)."""

    name = "trt"

    def __init__(self, bundle, precision: str = "int8", device: int = 0):
        from edgevos.bundle import Bundle, load_bundle

        trt = require("tensorrt", "trt", "the TensorRT backend")
        cudart = _cudart()
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        key = precision if precision.startswith("trt-") else f"trt-{precision}"
        if key not in bundle.precisions:
            built = [p[4:] for p in bundle.precisions if p.startswith("trt-")]
            raise BundleError(
                f"bundle {bundle.root} has no TensorRT '{precision}' engines (built: {built or 'none'}): "
                f"run 'edgevos build {bundle.root} --precision {precision.split('-')[0]}'"
            )
        from edgevos.export.tensorrt import gpu_name

        reason = engine_mismatch(bundle, key, trt.__version__, gpu_name())
        if reason is not None:
            raise BundleError(f"bundle {bundle.root}: {reason}: rebuild the engines on this device with "
                              f"'edgevos build {bundle.root} --precision {key[4:].split('-')[0]}'")
        super().__init__(bundle.specs)
        self.bundle = bundle
        self.precision = key[4:]
        self.name = f"trt-{self.precision}"
        self.cudart = cudart
        _check(cudart.cudaSetDevice(int(device)), "cudaSetDevice")
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engines = {}
        for spec in bundle.specs:
            path = bundle.stage_path(spec.name, key)
            self.engines[spec.name] = _StageEngine(trt, cudart, self.runtime, path, spec, self.stream)

    def _run(self, spec, feeds):
        return self.engines[spec.name].run(feeds)

    def _run_into(self, spec, feeds, out):
        return self.engines[spec.name].run(feeds, out)

    def close(self):
        for e in self.engines.values():
            e.free()
        self.engines = {}
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None

    def __del__(self):  # pragma: no cover - GPU only
        try:
            self.close()
        except Exception:
            pass


def available() -> Optional[str]:
    """None if TensorRT + cuda-python import here, else the reason."""
    try:
        require("tensorrt", "trt")
        _cudart()
    except ImportError as exc:
        return str(exc)
    return None
