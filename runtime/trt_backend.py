"""TensorRT backend: runs a bundle's engines (built by ``edgevos build``).  Torch-free.

Needs TensorRT 10 (JetPack 6.1 / 6.2 ship 10.3; its Python bindings come with
JetPack, not pip).  CUDA calls go through ctypes to the system ``libcudart.so.12``
(:class:`edgevos.jetson.trtinfo.CudaRuntime`), so the runtime always matches the
driver JetPack installed.  Per stage: one deserialised engine and execution context;
the activation (scratch) memory of all stages is one shared block, since the stages of
a program run one after another on one stream.

Stage outputs stay on the device.  ``run`` returns each output as a
:class:`DeviceArray`: a handle on a device block that copies itself to the host the
first time it is read as an array (``np.asarray``, indexing, arithmetic, ``.reshape``
...), so a step program written for numpy runs unchanged, and an output it only passes
to the next stage is bound to that stage's input where it lies, with no copy.  A step
then copies to the host only what the program reads (the gate's decision, the features
of the host-side target model, the logits) and from the host only what the host made
(the frame, the target model's score).  Output blocks come from a pool: a block goes
back when its handle is dropped, so a step in steady state allocates nothing, and a
handle the program keeps (a refiner state, an embedding) is never overwritten by a
later call.  Outputs written into given arrays (``run(..., out=...)``, the ring slots of
a SlowFast step) are copied there directly.  ``device_outputs=False`` copies every
output to the host as numpy arrays instead.

A call enqueues the copies of host inputs and ``execute_async_v3`` on the backend's
stream and synchronises it, so ``last_ms`` is the stage's time and the page-locked
staging buffers of host inputs are free again when ``run`` returns.

On an integrated GPU (Jetson: CPU and GPU share the DRAM, ``cudaDevAttrIntegrated``)
stage outputs and host-input buffers are mapped page-locked memory
(``cudaHostAlloc(cudaHostAllocMapped)`` + ``cudaHostGetDevicePointer``): the engine
writes where the host reads and reads where the host wrote, so no ``cudaMemcpy`` runs
at all; reading an output on the host is a CPU copy out of the mapped block (the block
goes back to the pool when its handle is dropped).  Discrete GPUs use device memory
and copies as above.
"""
from __future__ import annotations

import ctypes
import weakref
from typing import Dict, List, Mapping, Optional

import numpy as np

from edgevos.errors import BundleError, DeviceError, InputError
from edgevos.jetson.trtinfo import ATTR_CAN_MAP_HOST_MEMORY, ATTR_INTEGRATED, D2H, H2D, CudaError, CudaRuntime
from edgevos.backend import Backend


def _device_memory_size(engine) -> int:
    size = getattr(engine, "device_memory_size_v2", None)  # TensorRT >= 10.1
    return int(engine.device_memory_size if size is None else size)


def mapped_memory(cuda: CudaRuntime, device: int = 0) -> bool:
    """Whether ``device`` is an integrated GPU that maps page-locked host memory (a Jetson)."""
    try:
        return bool(cuda.device_attribute(ATTR_INTEGRATED, device)) and bool(
            cuda.device_attribute(ATTR_CAN_MAP_HOST_MEMORY, device))
    except CudaError:
        return False


class _BlockPool:
    """Blocks by size, named by their device address: ``take`` reuses a returned block or
    allocates one.  ``mapped``: mapped page-locked host memory, whose host address is
    ``host_ptr(device address)``; else device memory."""

    def __init__(self, cuda: CudaRuntime, mapped: bool = False):
        self.cuda = cuda
        self.mapped = bool(mapped)
        self.free_blocks: Dict[int, List[int]] = {}
        self.host: Dict[int, int] = {}
        self.closed = False

    def take(self, nbytes: int) -> int:
        blocks = self.free_blocks.get(nbytes)
        if blocks:
            return blocks.pop()
        if not self.mapped:
            return int(self.cuda.malloc(nbytes))
        hptr = int(self.cuda.host_alloc(nbytes, mapped=True))
        try:
            dptr = int(self.cuda.host_device_pointer(hptr))
        except Exception:
            self.cuda.free_host(hptr)
            raise
        self.host[dptr] = hptr
        return dptr

    def host_ptr(self, ptr: int) -> int:
        return self.host[ptr]

    def _free(self, ptr: int) -> None:
        if self.mapped:
            self.cuda.free_host(self.host.pop(ptr))
        else:
            self.cuda.free(ptr)

    def give(self, ptr: int, nbytes: int) -> None:
        if self.closed:
            self._free(ptr)
        else:
            self.free_blocks.setdefault(nbytes, []).append(ptr)

    def close(self) -> None:
        for blocks in self.free_blocks.values():
            for p in blocks:
                self._free(p)
        self.free_blocks, self.closed = {}, True


class DeviceArray:
    """A stage output in device memory, read like a read-only numpy array.

    ``shape``, ``dtype``, ``ndim``, ``size``, ``nbytes`` and ``len()`` need no copy.  Anything
    else (``np.asarray``, indexing, arithmetic, numpy methods and functions) copies the
    tensor to the host once and works on that copy, which is read-only because the device
    block it mirrors is what the next stage gets.  Fed to a stage of the backend that made
    it, the tensor is bound where it lies.  The block goes back to the backend's pool when
    the handle is dropped; closing the backend copies live handles to the host first.
    """

    __slots__ = ("shape", "dtype", "_owner", "_ptr", "_host", "__weakref__")
    __array_priority__ = 20

    def __init__(self, owner: "TrtBackend", ptr: int, shape, dtype):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self._owner = owner
        self._ptr: Optional[int] = int(ptr)
        self._host: Optional[np.ndarray] = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def device_ptr(self, owner=None) -> Optional[int]:
        """The device address, or None once released or when ``owner`` is another backend."""
        if self._ptr is None or (owner is not None and owner is not self._owner):
            return None
        return self._ptr

    def numpy(self) -> np.ndarray:
        """The tensor on the host (copied on first use, then kept; read-only)."""
        if self._host is None:
            host = np.empty(self.shape, self.dtype)
            self._owner._to_host(host, self._ptr)
            host.flags.writeable = False
            self._host = host
        return self._host

    def _release(self) -> None:
        """Copy to the host and give the device block back (the backend is closing)."""
        if self._ptr is not None:
            self.numpy()
            ptr, self._ptr = self._ptr, None
            self._owner._pool.give(ptr, self.nbytes)

    def __del__(self):
        ptr = getattr(self, "_ptr", None)
        if ptr is not None:
            self._ptr = None
            try:
                self._owner._pool.give(ptr, self.nbytes)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def __getattr__(self, name):  # numpy's attributes and methods, on the host copy
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.numpy(), name)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        return self.numpy()[key]

    def __iter__(self):
        return iter(self.numpy())

    def __float__(self):
        return float(self.numpy())

    def __int__(self):
        return int(self.numpy())

    def __bool__(self):
        return bool(self.numpy())

    def __repr__(self):
        where = "device" if self._host is None else "device+host"
        return f"DeviceArray({self.dtype}{list(self.shape)}, {where})"


def _delegate(name):
    def method(self, *args):
        return getattr(self.numpy(), f"__{name}__")(*args)

    method.__name__ = f"__{name}__"
    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "radd", "rsub", "rmul", "rtruediv", "rfloordiv", "rmod", "rpow", "rmatmul", "rand", "ror", "rxor",
              "neg", "pos", "abs", "invert", "lt", "le", "gt", "ge", "eq", "ne"):
    setattr(DeviceArray, f"__{_name}__", _delegate(_name))


class _StageEngine:
    def __init__(self, trt, backend: "TrtBackend", path, spec):
        self.backend = backend
        self.cuda = backend.cuda
        self.spec = spec
        engine = backend.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BundleError(
                f"TensorRT cannot deserialise {path.name}: it was built for another TensorRT version or GPU; "
                f"rebuild with 'edgevos build'"
            )
        self.engine = engine
        # activation memory is given by the backend (one block shared by every stage)
        self.context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        self.scratch_bytes = _device_memory_size(engine)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        want = set(spec.input_names) | set(spec.output_names)
        if set(names) != want:
            raise BundleError(f"engine {path.name} has tensors {sorted(names)} but stage '{spec.name}' needs {sorted(want)}")
        self.shape: Dict[str, tuple] = {}
        self.dtype: Dict[str, np.dtype] = {}
        for name in names:
            self.shape[name] = tuple(int(d) for d in engine.get_tensor_shape(name))
            self.dtype[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        # host inputs: a page-locked staging buffer and a device buffer each, made on first use
        # (an input that always comes from another stage's output never needs them)
        self.staged: Dict[str, tuple] = {}

    def use_scratch(self, ptr: int) -> None:
        if hasattr(self.context, "set_device_memory"):  # TensorRT >= 10.1
            self.context.set_device_memory(int(ptr), self.scratch_bytes)
        else:
            self.context.device_memory = int(ptr)

    def nbytes(self, name: str) -> int:
        return int(np.prod(self.shape[name], dtype=np.int64)) * self.dtype[name].itemsize

    def _stage_in(self, name: str, value) -> int:
        """Put a host input where the engine reads it: its page-locked buffer, then (discrete
        GPU) a copy to its device buffer (enqueued); returns the address the engine reads."""
        mapped = self.backend.mapped
        if name not in self.staged:
            nbytes = self.nbytes(name)
            hptr = self.cuda.host_alloc(nbytes, mapped=mapped)
            try:
                dptr = self.cuda.host_device_pointer(hptr) if mapped else self.cuda.malloc(nbytes)
            except Exception:
                self.cuda.free_host(hptr)
                raise
            buf = (ctypes.c_byte * nbytes).from_address(int(hptr))
            host = np.frombuffer(buf, dtype=self.dtype[name]).reshape(self.shape[name])
            self.staged[name] = (host, int(hptr), int(dptr))
        host, _, dptr = self.staged[name]
        np.copyto(host, np.asarray(value), casting="same_kind")
        if not mapped:
            self.cuda.memcpy_async(dptr, host.ctypes.data, host.nbytes, H2D, self.backend.stream)
        return dptr

    def run(self, feeds: Mapping[str, np.ndarray], out: Optional[Mapping[str, np.ndarray]] = None,
            device_outputs: bool = True) -> Dict[str, object]:
        backend, cuda, ctx = self.backend, self.cuda, self.context
        out = out or {}
        for name in self.spec.input_names:
            value = feeds[name]
            ptr = value.device_ptr(backend) if isinstance(value, DeviceArray) else None
            if ptr is None or value.dtype != self.dtype[name]:
                ptr = self._stage_in(name, value)
            ctx.set_tensor_address(name, ptr)
        blocks = {}
        try:
            for name in self.spec.output_names:
                blocks[name] = backend._pool.take(self.nbytes(name))
                ctx.set_tensor_address(name, blocks[name])
            if not ctx.execute_async_v3(int(backend.stream)):
                raise DeviceError(f"TensorRT execute_async_v3 failed for stage '{self.spec.name}'")
            res: Dict[str, object] = {}
            for name in self.spec.output_names:
                dst = out.get(name)
                if dst is None and not device_outputs:
                    dst = np.empty(self.shape[name], self.dtype[name])
                if dst is not None:  # straight into the caller's (or a new) host array
                    if not backend.mapped:
                        cuda.memcpy_async(dst.ctypes.data, blocks[name], self.nbytes(name), D2H, backend.stream)
                    res[name] = dst
            cuda.stream_synchronize(backend.stream)
            if backend.mapped:  # the engine wrote into host memory: a CPU copy, no cudaMemcpy
                for name, dst in res.items():
                    np.copyto(dst, backend._mapped_view(blocks[name], self.shape[name], self.dtype[name]),
                              casting="same_kind")
        except BaseException:
            for name, ptr in blocks.items():
                backend._pool.give(ptr, self.nbytes(name))
            raise
        for name in self.spec.output_names:
            if name in res:
                backend._pool.give(blocks[name], self.nbytes(name))
            else:
                res[name] = backend._adopt(blocks[name], self.shape[name], self.dtype[name])
        return res

    def free(self):
        for _, hptr, dptr in self.staged.values():
            if not self.backend.mapped:
                self.cuda.free(dptr)
            self.cuda.free_host(hptr)
        self.staged = {}


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
        device_outputs: return outputs as :class:`DeviceArray` handles that stay on the
            device until read (default); False copies every output to the host.
        mapped: stage outputs and host inputs in mapped page-locked memory, no cudaMemcpy;
            None (default): where the GPU is integrated and can map host memory (Jetson).
    """

    name = "trt"

    def __init__(self, bundle, precision: str = "int8", device: int = 0, cuda: Optional[CudaRuntime] = None,
                 device_outputs: bool = True, mapped: Optional[bool] = None):
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
        self.device_outputs = bool(device_outputs)
        self.engines = {}
        self.stream = None
        self.scratch = None
        self.mapped = mapped_memory(cuda, int(device)) if mapped is None else bool(mapped)
        self._pool = _BlockPool(cuda, self.mapped)
        self._live: "weakref.WeakSet[DeviceArray]" = weakref.WeakSet()
        cuda.set_device(int(device))
        self.stream = cuda.stream_create()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        for spec in bundle.specs:
            path = bundle.stage_path(spec.name, key)
            self.engines[spec.name] = _StageEngine(trt, self, path, spec)
        # one block per stage output in the pool up front, so the first frame allocates nothing
        sizes = [e.nbytes(n) for e in self.engines.values() for n in e.spec.output_names]
        for size, ptr in [(size, self._pool.take(size)) for size in sizes]:
            self._pool.give(ptr, size)
        # stages run one at a time on one stream: one activation block serves them all
        self.scratch_bytes = max([e.scratch_bytes for e in self.engines.values()] + [0])
        if self.scratch_bytes:
            self.scratch = cuda.malloc(self.scratch_bytes)
        for e in self.engines.values():
            e.use_scratch(self.scratch or 0)

    def _run(self, spec, feeds):
        return self._engine(spec).run(feeds, None, self.device_outputs)

    def _run_into(self, spec, feeds, out):
        return self._engine(spec).run(feeds, out, self.device_outputs)

    def _engine(self, spec) -> _StageEngine:
        engine = self.engines.get(spec.name)
        if engine is None:
            raise InputError(f"backend '{self.name}' is closed: make a new TrtBackend to run stage '{spec.name}'")
        return engine

    def _adopt(self, ptr: int, shape, dtype) -> DeviceArray:
        arr = DeviceArray(self, ptr, shape, dtype)
        self._live.add(arr)
        return arr

    def _mapped_view(self, ptr: int, shape, dtype) -> np.ndarray:
        """The host view of a mapped block (valid while the block is not given back)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        buf = (ctypes.c_byte * nbytes).from_address(self._pool.host_ptr(ptr))
        return np.frombuffer(buf, dtype=dtype).reshape(shape)

    def _to_host(self, host: np.ndarray, ptr: int) -> None:
        if self.mapped:  # written by a stage that has synchronised: read it where it lies
            np.copyto(host, self._mapped_view(ptr, host.shape, host.dtype))
            return
        self.cuda.memcpy_async(host.ctypes.data, ptr, host.nbytes, D2H, self.stream)
        self.cuda.stream_synchronize(self.stream)

    def close(self):
        """Free every device and page-locked buffer.  Output handles still alive are copied
        to the host first and keep reading as arrays."""
        if getattr(self, "stream", None) is not None:
            for arr in list(self._live):
                arr._release()
        for e in self.engines.values():
            e.free()
        self.engines = {}
        if getattr(self, "_pool", None) is not None:
            self._pool.close()
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
