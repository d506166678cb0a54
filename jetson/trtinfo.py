"""Facts about the TensorRT target that Python and the build scripts must agree on.

Standard library only, so the same file serves ``edgevos`` (imported as
``edgevos.jetson.trtinfo``) and the trtexec build scripts (run as
``python3 trtinfo.py ...`` with the system Python of JetPack):

* :class:`CudaRuntime`: the few CUDA runtime calls edgevos needs, made through
  ctypes on the ``libcudart.so.12`` that JetPack (or the CUDA toolkit) installs,
  so no pip-installed CUDA binding can pull in a runtime the driver does not support.
* :func:`device_identity`: what an engine is keyed on, ``sm<major><minor>x<SMs>``
  (compute capability and SM count), the same on the host, in a container and in
  the scripts; unlike the board model it does not change with a reflash or a
  masked ``/proc/device-tree``.
* :func:`trt_version`: the TensorRT version (Python bindings, else ``libnvinfer``).
* :func:`onnx_op_counts` / :func:`has_qdq`: whether an ONNX graph holds Q/DQ nodes,
  read straight from the protobuf (no ``onnx`` package on the board).

Command line::

    python3 trtinfo.py identity          # sm87x16, or 'unknown' without a CUDA device
    python3 trtinfo.py trt-version       # 10.3.0, or 'unknown'
    python3 trtinfo.py cuda              # 'runtime 12.6 driver 12.6'; the reason and exit 1 without one
    python3 trtinfo.py qdq FILE.onnx     # 'qdq' or 'float'
"""
from __future__ import annotations

import ctypes
import re
import sys
from typing import Dict, Optional

try:  # inside edgevos: errors share the package's base class
    from edgevos.errors import BundleError as _FileError
    from edgevos.errors import DeviceError as _CudaBase
except ImportError:  # run as a plain script
    _CudaBase = RuntimeError
    _FileError = ValueError

#: TensorRT major version edgevos builds and runs engines with (JetPack 6.1 / 6.2: 10.3)
MIN_TRT_MAJOR = 10
#: CUDA runtime major version edgevos loads (JetPack 6: CUDA 12.x)
CUDART_NAMES = ("libcudart.so.12", "libcudart.so", "/usr/local/cuda/lib64/libcudart.so.12",
                "/usr/local/cuda/targets/aarch64-linux/lib/libcudart.so.12")
NVINFER_NAMES = ("libnvinfer.so.10", "libnvinfer.so")

# cudaDeviceAttr values (CUDA runtime API, driver_types.h)
ATTR_MULTIPROCESSOR_COUNT = 16
ATTR_CAN_MAP_HOST_MEMORY = 19
ATTR_INTEGRATED = 18
ATTR_CC_MAJOR = 75
ATTR_CC_MINOR = 76
# cudaMemcpyKind
H2D, D2H, D2D = 1, 2, 3
# cudaHostAlloc flags
HOST_ALLOC_MAPPED = 2


class CudaError(_CudaBase):
    """A CUDA runtime call failed, or no CUDA runtime could be loaded."""


class CudaRuntime:
    """ctypes calls into ``libcudart``; every method raises :class:`CudaError` on failure.

    Args:
        lib: an already loaded library (tests pass a stand-in); default: the first of
            :data:`CUDART_NAMES` that loads.
    """

    def __init__(self, lib=None):
        if lib is None:
            lib = _load(CUDART_NAMES, "the CUDA 12 runtime (libcudart.so.12)",
                        "it ships with JetPack 6 (CUDA 12.6); on a desktop install the CUDA 12 toolkit")
            lib.cudaGetErrorString.restype = ctypes.c_char_p
        self.lib = lib

    def _call(self, name: str, *args) -> None:
        err = int(getattr(self.lib, name)(*args))
        if err != 0:
            text = self.lib.cudaGetErrorString(err)
            text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
            raise CudaError(f"{name} failed: CUDA error {err} ({text})")

    def _out_ptr(self, name: str, *args) -> int:
        p = ctypes.c_void_p()
        self._call(name, ctypes.byref(p), *args)
        return int(p.value or 0)

    def versions(self) -> Dict[str, int]:
        """CUDA runtime and driver versions as integers (12060 = 12.6)."""
        rt, drv = ctypes.c_int(), ctypes.c_int()
        self._call("cudaRuntimeGetVersion", ctypes.byref(rt))
        self._call("cudaDriverGetVersion", ctypes.byref(drv))
        return {"runtime": rt.value, "driver": drv.value}

    def device_attribute(self, attr: int, device: int = 0) -> int:
        v = ctypes.c_int()
        self._call("cudaDeviceGetAttribute", ctypes.byref(v), ctypes.c_int(attr), ctypes.c_int(device))
        return v.value

    def set_device(self, device: int) -> None:
        self._call("cudaSetDevice", ctypes.c_int(device))

    def stream_create(self) -> int:
        return self._out_ptr("cudaStreamCreate")

    def stream_synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", ctypes.c_void_p(stream))

    def stream_destroy(self, stream: int) -> None:
        self._call("cudaStreamDestroy", ctypes.c_void_p(stream))

    def malloc(self, nbytes: int) -> int:
        return self._out_ptr("cudaMalloc", ctypes.c_size_t(nbytes))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", ctypes.c_void_p(ptr))

    def host_alloc(self, nbytes: int, mapped: bool = False) -> int:
        """Page-locked host memory; ``mapped`` also maps it into the device address space."""
        return self._out_ptr("cudaHostAlloc", ctypes.c_size_t(nbytes), ctypes.c_uint(HOST_ALLOC_MAPPED if mapped else 0))

    def host_device_pointer(self, host_ptr: int) -> int:
        """Device address of mapped page-locked memory (the same DRAM on a Jetson)."""
        return self._out_ptr("cudaHostGetDevicePointer", ctypes.c_void_p(host_ptr), ctypes.c_uint(0))

    def free_host(self, ptr: int) -> None:
        self._call("cudaFreeHost", ctypes.c_void_p(ptr))

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self._call("cudaMemcpyAsync", ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes),
                   ctypes.c_int(kind), ctypes.c_void_p(stream))


def _load(names, what: str, fix: str):
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise CudaError(f"cannot load {what} (tried {', '.join(names)}): {fix}")


def identity_from(cc_major: int, cc_minor: int, sm_count: int) -> str:
    """'sm87x16' for compute capability 8.7 with 16 SMs (an Orin AGX 64GB)."""
    return f"sm{int(cc_major)}{int(cc_minor)}x{int(sm_count)}"


def device_identity(device: int = 0, runtime: Optional[CudaRuntime] = None) -> str:
    """The engine key of CUDA device ``device``, or 'unknown' without a usable CUDA runtime/device."""
    try:
        rt = runtime or CudaRuntime()
        return identity_from(rt.device_attribute(ATTR_CC_MAJOR, device), rt.device_attribute(ATTR_CC_MINOR, device),
                             rt.device_attribute(ATTR_MULTIPROCESSOR_COUNT, device))
    except CudaError:
        return "unknown"


def short_version(version) -> str:
    """'10.3.0.30' -> '10.3.0'; 'unknown' when there are no digits."""
    parts = re.findall(r"\d+", str(version))
    return ".".join(parts[:3]) if parts else "unknown"


def trt_version() -> str:
    """TensorRT version from its Python bindings, else from ``libnvinfer``; 'unknown' without either."""
    try:
        import tensorrt  # noqa: PLC0415 - optional

        return short_version(tensorrt.__version__)
    except Exception:
        pass
    try:
        lib = _load(NVINFER_NAMES, "libnvinfer", "")
        lib.getInferLibVersion.restype = ctypes.c_int32
        v = int(lib.getInferLibVersion())
    except (CudaError, AttributeError):
        return "unknown"
    # TensorRT >= 10 encodes major*10000 + minor*100 + patch, older ones major*1000 + minor*100 + patch
    if v >= 100000:
        return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
    return f"{v // 1000}.{v // 100 % 10}.{v % 100}"


def trt_major(version) -> Optional[int]:
    m = re.match(r"\s*(\d+)", str(version))
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------ ONNX protobuf reading
def _varint(buf, i):
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf):
    """(field number, wire type, value) of one protobuf message; length-delimited values are memoryviews."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = _varint(buf, i)
            val, i = buf[i:i + size], i + size
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > n:
            raise ValueError("truncated message")
        yield field, wire, val


# onnx.proto field numbers: ModelProto.graph = 7, GraphProto.node = 1, NodeProto.op_type = 4
_MODEL_GRAPH, _GRAPH_NODE, _NODE_OP_TYPE = 7, 1, 4


def onnx_op_counts(path) -> Dict[str, int]:
    """How many nodes of each op type the main graph of an ONNX file has."""
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    counts: Dict[str, int] = {}
    try:
        graphs = [v for f, w, v in _fields(buf) if f == _MODEL_GRAPH and w == 2]
        for graph in graphs:
            for f, w, node in _fields(graph):
                if f != _GRAPH_NODE or w != 2:
                    continue
                for nf, nw, val in _fields(node):
                    if nf == _NODE_OP_TYPE and nw == 2:
                        op = bytes(val).decode()
                        counts[op] = counts.get(op, 0) + 1
    except (ValueError, UnicodeDecodeError) as exc:
        raise _FileError(f"{path} is not a readable ONNX model ({exc}): re-export the bundle") from None
    if not graphs:
        raise _FileError(f"{path} is not an ONNX model (no graph): re-export the bundle")
    return counts


def has_qdq(path) -> bool:
    """Whether an ONNX graph has QuantizeLinear/DequantizeLinear nodes (explicit INT8)."""
    counts = onnx_op_counts(path)
    return counts.get("QuantizeLinear", 0) + counts.get("DequantizeLinear", 0) > 0


def cuda_versions_text(runtime: Optional[CudaRuntime] = None) -> str:
    """'runtime 12.6 driver 12.6' (CUDA runtime and the newest runtime the driver supports)."""
    v = (runtime or CudaRuntime()).versions()

    def dotted(n):
        return f"{n // 1000}.{n % 1000 // 10}"

    return f"runtime {dotted(v['runtime'])} driver {dotted(v['driver'])}"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: trtinfo.py identity | trt-version | cuda | qdq FILE.onnx"
    if argv[:1] == ["identity"] and len(argv) == 1:
        print(device_identity())
    elif argv[:1] == ["trt-version"] and len(argv) == 1:
        print(trt_version())
    elif argv[:1] == ["cuda"] and len(argv) == 1:
        try:
            print(cuda_versions_text())
        except CudaError as exc:
            print(exc, file=sys.stderr)
            return 1
    elif argv[:1] == ["qdq"] and len(argv) == 2:
        try:
            print("qdq" if has_qdq(argv[1]) else "float")
        except (OSError, ValueError, _FileError) as exc:
            print(exc, file=sys.stderr)
            return 1
    else:
        print(usage, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
