"""TensorRT backend: runs a bundle's engines (built by ``edgevos build``).  Torch-free.

Needs TensorRT 10 (JetPack 6.1 / 6.2 ship 10.3; its Python bindings come with
JetPack, not pip).  CUDA calls go through ctypes to the system ``libcudart.so.12``
(:class:`edgevos.jetson.trtinfo.CudaRuntime`), so the runtime always matches the
driver JetPack installed.  Per stage: one deserialised engine and execution context,
page-locked host buffers and device buffers allocated once, tensor addresses set
once; the activation (scratch) memory of all stages is one shared block, since the
stages of a program run one after another on one stream.  A call copies inputs
host->device asynchronously on the backend's CUDA stream, enqueues
``execute_async_v3``, copies outputs back and synchronises the stream.
"""
from __future__ import annotations

import ctypes
from typing import Dict, Mapping, Optional

import numpy as np

from edgevos.errors import BundleError, SourceError
from edgevos.jetson.trtinfo import D2H, H2D, CudaRuntime
from edgevos.backend import Backend


def _device_memory_size(engine) -> int:
    size = getattr(engine, "device_memory_size_v2", None)  # TensorRT >= 10.1
    return int(engine.device_memory_size if size is None else size)


class _StageEngine:
    def __init__(self, trt, cuda: CudaRuntime, runtime, path, spec, stream):
        self.cuda = cuda
        self.spec = spec
        self.stream = stream
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BundleError(
                f"TensorRT cannot deserialise {path.name}: it was built for another TensorRT version or GPU; "
                f"rebuild with 'edgevos build'"
            )
        self.engine = engine
        # activation memory is given by the backend (one block shared by every stage)
        self.context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        self.scratch_bytes = _device_memory_size(engine)
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
            hptr = cuda.host_alloc(nbytes)
            self._host_ptrs.append(hptr)
            buf = (ctypes.c_byte * nbytes).from_address(int(hptr))
            self.host[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
            dptr = cuda.malloc(nbytes)
            self.device[name] = int(dptr)
            self.context.set_tensor_address(name, int(dptr))

    def use_scratch(self, ptr: int) -> None:
        if hasattr(self.context, "set_device_memory"):  # TensorRT >= 10.1
            self.context.set_device_memory(int(ptr), self.scratch_bytes)
        else:
            self.context.device_memory = int(ptr)

    def run(self, feeds: Mapping[str, np.ndarray], out: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """Outputs are copied out of the page-locked staging buffers, into ``out``'s arrays where given."""
        cuda = self.cuda
        for name in self.spec.input_names:
            host = self.host[name]
            np.copyto(host, feeds[name], casting="same_kind")
            cuda.memcpy_async(self.device[name], host.ctypes.data, host.nbytes, H2D, self.stream)
        if not self.context.execute_async_v3(int(self.stream)):
            raise SourceError(f"TensorRT execute_async_v3 failed for stage '{self.spec.name}'")
        for name in self.spec.output_names:
            host = self.host[name]
            cuda.memcpy_async(host.ctypes.data, self.device[name], host.nbytes, D2H, self.stream)
        cuda.stream_synchronize(self.stream)
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
            self.cuda.free(p)
        for p in self._host_ptrs:
            self.cuda.free_host(p)
        self.device, self._host_ptrs = {}, []


def engine_mismatch(bundle, key: str, trt_version: str, gpu: str) -> Optional[str]:
    """Why the ``key`` engines of ``bundle`` cannot run with this TensorRT and GPU, or None.

    A TensorRT engine only deserialises with the TensorRT version it was built
    with, on the GPU it was built for.  Both are recorded in each engine's file
    name (``<stage>.<precision>.trt<ver>.<device>.<H>x<W>.engine``, the device as
    :func:`edgevos.jetson.trtinfo.device_identity` gives it); engines named
    otherwise are left to TensorRT to judge.  ``gpu`` 'unknown' on either side
    skips the device comparison.
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
                    f"'{here_gpu}'; engines only run on the GPU they were built for")
    return None


class TrtBackend(Backend):
    """Run a bundle's TensorRT engines: ``precision`` is a built engine set, e.g.
    ``int8``, ``fp16``, ``best`` or ``fp16-dla0`` (manifest key ``trt-<precision>``).

    Args:
        bundle: a bundle directory or :class:`~edgevos.bundle.Bundle`.
        precision: the engine set to run.
        device: CUDA device number.
        cuda: CUDA runtime calls (default: :class:`~edgevos.jetson.trtinfo.CudaRuntime` on
            the system ``libcudart.so.12``).
    """

    name = "trt"

    def __init__(self, bundle, precision: str = "int8", device: int = 0, cuda: Optional[CudaRuntime] = None):
        from edgevos.bundle import Bundle, load_bundle
        from edgevos.export.tensorrt import import_tensorrt
        from edgevos.jetson.trtinfo import device_identity

        trt = import_tensorrt("the TensorRT backend")
        cuda = cuda if cuda is not None else CudaRuntime()
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        key = precision if precision.startswith("trt-") else f"trt-{precision}"
        if key not in bundle.precisions:
            built = [p[4:] for p in bundle.precisions if p.startswith("trt-")]
            raise BundleError(
                f"bundle {bundle.root} has no TensorRT '{precision}' engines (built: {built or 'none'}): "
                f"run 'edgevos build {bundle.root} --precision {precision.split('-')[0]}'"
            )
        reason = engine_mismatch(bundle, key, trt.__version__, device_identity(int(device), cuda))
        if reason is not None:
            raise BundleError(f"bundle {bundle.root}: {reason}: rebuild the engines on this device with "
                              f"'edgevos build {bundle.root} --precision {key[4:].split('-')[0]}'")
        super().__init__(bundle.specs)
        self.bundle = bundle
        self.precision = key[4:]
        self.name = f"trt-{self.precision}"
        self.cuda = cuda
        self.engines = {}
        self.stream = None
        self.scratch = None
        cuda.set_device(int(device))
        self.stream = cuda.stream_create()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        for spec in bundle.specs:
            path = bundle.stage_path(spec.name, key)
            self.engines[spec.name] = _StageEngine(trt, cuda, self.runtime, path, spec, self.stream)
        # stages run one at a time on one stream: one activation block serves them all
        self.scratch_bytes = max([e.scratch_bytes for e in self.engines.values()] + [0])
        if self.scratch_bytes:
            self.scratch = cuda.malloc(self.scratch_bytes)
        for e in self.engines.values():
            e.use_scratch(self.scratch or 0)

    def _run(self, spec, feeds):
        return self.engines[spec.name].run(feeds)

    def _run_into(self, spec, feeds, out):
        return self.engines[spec.name].run(feeds, out)

    def close(self):
        for e in self.engines.values():
            e.free()
        self.engines = {}
        if getattr(self, "scratch", None):
            self.cuda.free(self.scratch)
            self.scratch = None
        if getattr(self, "stream", None) is not None:
            self.cuda.stream_destroy(self.stream)
            self.stream = None

    def __del__(self):  # pragma: no cover - GPU only
        try:
            self.close()
        except Exception:
            pass


def available() -> Optional[str]:
    """None if TensorRT 10 and the CUDA 12 runtime load here, else the reason."""
    from edgevos.export.tensorrt import import_tensorrt
    from edgevos.jetson.trtinfo import CudaError

    try:
        import_tensorrt()
        CudaRuntime()
    except (ImportError, CudaError) as exc:
        return str(exc)
    return None
