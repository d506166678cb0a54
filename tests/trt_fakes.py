"""Stand-ins for what only a board has: tiny ONNX graphs with and without Q/DQ, a bundle
made of them, a recording ``tensorrt`` module and a CUDA runtime that counts its calls.
They record what edgevos asks of TensorRT and CUDA.  "Device" memory is host memory, so
copies really move bytes, and a fake engine fills each output with one number made from
its inputs (1 + the mean of the inputs' first elements): enough to see which buffers a
stage read and wrote, nothing like the network's math."""
from __future__ import annotations

import ctypes
import types
from pathlib import Path

import numpy as np


def conv_onnx(path: Path, qdq: bool, c: int = 4, hw=(8, 8)) -> Path:
    """One Conv (+ residual Add); with ``qdq`` its input and weight go through Q/DQ."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = hw
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32), "w")]
    nodes = []
    x, wt = "x", "w"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "sx"),
                  numpy_helper.from_array(np.array(0, np.int8), "zx"),
                  numpy_helper.from_array(np.full((c,), 0.01, np.float32), "sw"),
                  numpy_helper.from_array(np.zeros((c,), np.int8), "zw")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="qx"),
                  helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="dqx"),
                  helper.make_node("QuantizeLinear", ["w", "sw", "zw"], ["wq"], name="qw", axis=0),
                  helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], name="dqw", axis=0)]
        x, wt = "xd", "wd"
    nodes += [helper.make_node("Conv", [x, wt], ["y0"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("Add", ["y0", "x"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def qdq_bundle(root: Path) -> Path:
    """A bundle with fp32 and int8-trt files: 'encoder' quantized, 'decoder' kept float
    (its int8-trt entry is the FP32 file, as ``edgevos export`` writes for such a stage)."""
    from edgevos.bundle import write_bundle
    from edgevos.stages import StageSpec, TensorSpec

    root.mkdir(parents=True)
    specs, files = [], {}
    for name in ("encoder", "decoder"):
        specs.append(StageSpec(name, (TensorSpec("x", (1, 4, 8, 8)),), (TensorSpec("y", (1, 4, 8, 8)),), name))
        fp32 = conv_onnx(root / f"{name}.onnx", qdq=False)
        files[name] = {"fp32": fp32, "int8-trt": conv_onnx(root / f"{name}.int8-trt.onnx", qdq=True) if name == "encoder" else fp32}
    write_bundle(root, family="toy", config={}, input_size=(64, 96), normalization={}, specs=specs, files=files,
                 stage_precision={"int8-trt": {"decoder": "fp32"}})
    return root


class _Enum:
    def __init__(self, *names):
        for i, n in enumerate(names):
            setattr(self, n, _Member(n, i))


class _Member:
    def __init__(self, name, value):
        self.name, self.value = name, value

    def __int__(self):
        return self.value

    def __repr__(self):
        return f"X.{self.name}"

    __str__ = __repr__


def fake_tensorrt(version: str = "10.3.0.30", dla_cores: int = 2):
    """A ``tensorrt`` module that parses ONNX with the onnx package into layer types and records
    network flags, builder flags and device settings (``trt.built``: one dict per build)."""
    import onnx

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.built = []
    trt.NetworkDefinitionCreationFlag = _Enum("EXPLICIT_BATCH", "STRONGLY_TYPED")
    trt.BuilderFlag = _Enum("FP16", "BF16", "INT8", "DEBUG", "GPU_FALLBACK")
    trt.MemoryPoolType = _Enum("WORKSPACE")
    trt.DeviceType = _Enum("GPU", "DLA")
    trt.ProfilingVerbosity = _Enum("LAYER_NAMES_ONLY", "NONE", "DETAILED")
    trt.LayerType = _Enum("CONVOLUTION", "ELEMENTWISE", "QUANTIZE", "DEQUANTIZE", "OTHER")
    op_layer = {"Conv": "CONVOLUTION", "Add": "ELEMENTWISE", "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE"}

    class Logger:
        WARNING = 2

        def __init__(self, level=None):
            self.level = level

    class Network:
        def __init__(self, flags):
            self.flags, self.layers = flags, []

        @property
        def num_layers(self):
            return len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            for node in onnx.load(path).graph.node:
                t = getattr(trt.LayerType, op_layer.get(node.op_type, "OTHER"))
                self.network.layers.append(types.SimpleNamespace(name=node.name, type=t, op=node.op_type))
            return True

    class Config:
        def __init__(self):
            self.flags, self.default_device_type, self.DLA_core = set(), trt.DeviceType.GPU, -1
            self.builder_optimization_level = 3
            self.profiling_verbosity = None

        def set_memory_pool_limit(self, pool, size):
            self.workspace = size

        def set_flag(self, flag):
            self.flags.add(flag.name)

        def get_device_type(self, layer):
            return self.default_device_type

        def can_run_on_DLA(self, layer):
            return layer.op in ("Conv", "Add")

        def create_timing_cache(self, blob):
            return types.SimpleNamespace(serialize=lambda: b"timing-cache")

        def set_timing_cache(self, cache, ignore_mismatch):
            return True

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            trt.built.append({
                "strongly_typed": bool(network.flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))),
                "flags": set(config.flags), "device": config.default_device_type.name, "dla_core": config.DLA_core,
            })
            return b"serialized-engine"

    trt.Logger, trt.OnnxParser, trt.Builder = Logger, OnnxParser, Builder
    return trt


class FakeCudaLib:
    """What ``CudaRuntime`` calls in libcudart: device attributes of a compute capability 8.7
    GPU with 16 SMs, discrete (``integrated=0``, the default) or sharing the host's DRAM like a
    Jetson (``integrated=1``), host and "device" memory from ctypes buffers, copies made with
    memmove, and a count of every call, copy and mapped host allocation.  Mapped host memory
    has the same address on the device (unified addressing, as on a Jetson)."""

    def __init__(self, cc=(8, 7), sms=16, integrated=0):
        self.attrs = {75: cc[0], 76: cc[1], 16: sms, 18: integrated, 19: 1}
        self.calls = {}
        self.copies = []  # (kind, nbytes)
        self.mapped_allocs = 0
        self._host = {}
        self._mapped = set()
        self._device = {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    @staticmethod
    def _set(ref, value):
        ref._obj.value = value

    def cudaGetErrorString(self, err):
        return b"fake error"

    def cudaDeviceGetAttribute(self, ref, attr, dev):
        self._count("cudaDeviceGetAttribute")
        self._set(ref, self.attrs[attr.value])
        return 0

    def cudaSetDevice(self, dev):
        self._count("cudaSetDevice")
        return 0

    def cudaStreamCreate(self, ref):
        self._count("cudaStreamCreate")
        self._set(ref, 0x5)
        return 0

    def cudaStreamDestroy(self, s):
        self._count("cudaStreamDestroy")
        return 0

    def cudaStreamSynchronize(self, s):
        self._count("cudaStreamSynchronize")
        return 0

    def cudaMalloc(self, ref, size):
        self._count("cudaMalloc")
        buf = ctypes.create_string_buffer(max(int(size.value), 1))
        self._device[ctypes.addressof(buf)] = buf
        self._set(ref, ctypes.addressof(buf))
        return 0

    def cudaFree(self, p):
        self._count("cudaFree")
        if self._device.pop(p.value, None) is None:
            return 1  # cudaErrorInvalidValue: not a live allocation
        return 0

    @property
    def device_bytes(self):
        """Bytes of "device" memory allocated and not freed."""
        return sum(len(b) for b in self._device.values())

    def cudaHostAlloc(self, ref, size, flags):
        self._count("cudaHostAlloc")
        buf = ctypes.create_string_buffer(max(int(size.value), 1))
        self._host[ctypes.addressof(buf)] = buf
        if flags.value & 2:  # cudaHostAllocMapped
            self.mapped_allocs += 1
            self._mapped.add(ctypes.addressof(buf))
        self._set(ref, ctypes.addressof(buf))
        return 0

    def cudaHostGetDevicePointer(self, ref, p, flags):
        self._count("cudaHostGetDevicePointer")
        if p.value not in self._mapped:
            return 1  # cudaErrorInvalidValue: not mapped page-locked memory
        self._set(ref, p.value)
        return 0

    def cudaFreeHost(self, p):
        self._count("cudaFreeHost")
        if self._host.pop(p.value, None) is None:
            return 1
        self._mapped.discard(p.value)
        return 0

    @property
    def host_bytes(self):
        """Bytes of page-locked host memory allocated and not freed."""
        return sum(len(b) for b in self._host.values())

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        self._count("cudaMemcpyAsync")
        self.copies.append((kind.value, n.value))
        ctypes.memmove(dst.value, src.value, n.value)
        return 0

    def cudaRuntimeGetVersion(self, ref):
        self._set(ref, 12060)
        return 0

    def cudaDriverGetVersion(self, ref):
        self._set(ref, 12060)
        return 0


def engine_io(spec):
    """A stage's engine I/O for :func:`add_fake_runtime`: ``[(name, shape, 'in' | 'out')]``."""
    return ([(t.name, tuple(t.shape), "in") for t in spec.inputs]
            + [(t.name, tuple(t.shape), "out") for t in spec.outputs])


def add_fake_runtime(trt, engines_io, trt_10_0: bool = False):
    """Give a fake ``tensorrt`` module a Runtime whose engines have the float32 I/O tensors
    ``engines_io[blob] = ([(name, shape, 'in' | 'out')], activation bytes)``; contexts record
    their tensor addresses, activation memory and executions, and an execution fills every
    output with 1 + the mean of the inputs' first elements, read at the bound addresses.
    ``trt_10_0``: the TensorRT 10.0 API (``engine.device_memory_size``, the
    ``context.device_memory`` property; no ``set_device_memory`` / ``device_memory_size_v2``)."""
    trt.ExecutionContextAllocationStrategy = _Enum("STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED")
    trt.TensorIOMode = _Enum("NONE", "INPUT", "OUTPUT")
    trt.nptype = lambda dt: np.float32
    trt.contexts = []

    class Context:
        def __init__(self, engine, strategy):
            self.engine, self.strategy, self.addresses, self.scratch, self.runs = engine, strategy, {}, None, 0
            trt.contexts.append(self)

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def set_device_memory(self, ptr, size):
            self.scratch = (ptr, size)

        def execute_async_v3(self, stream):
            self.runs += 1
            ins = [ctypes.c_float.from_address(self.addresses[n]).value for n, _, m in self.engine.io if m == "in"]
            value = 1.0 + (sum(ins) / len(ins) if ins else 0.0)
            for name, shape, mode in self.engine.io:
                if mode == "out":
                    n = int(np.prod(shape))
                    np.frombuffer((ctypes.c_float * n).from_address(self.addresses[name]), np.float32)[:] = value
            return True

    class Engine:
        def __init__(self, io, scratch):
            self.io, self.device_memory_size_v2 = io, scratch

        @property
        def num_io_tensors(self):
            return len(self.io)

        def get_tensor_name(self, i):
            return self.io[i][0]

        def get_tensor_shape(self, name):
            return {n: s for n, s, _ in self.io}[name]

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_mode(self, name):
            mode = {n: m for n, _, m in self.io}[name]
            return trt.TensorIOMode.INPUT if mode == "in" else trt.TensorIOMode.OUTPUT

        def create_execution_context(self, strategy=None):
            return Context(self, strategy)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            io, scratch = engines_io[bytes(blob)]
            return Engine(io, scratch)

    if trt_10_0:
        class Context10(Context):
            set_device_memory = property()  # absent: hasattr() is False

            @property
            def device_memory(self):
                return self.scratch[0] if self.scratch else None

            @device_memory.setter
            def device_memory(self, ptr):
                self.scratch = (ptr, None)

        class Engine10(Engine):
            def __init__(self, io, scratch):
                self.io, self.device_memory_size = io, scratch

            def create_execution_context(self, strategy=None):
                return Context10(self, strategy)

        class Runtime10(Runtime):
            def deserialize_cuda_engine(self, blob):
                io, scratch = engines_io[bytes(blob)]
                return Engine10(io, scratch)

        Runtime = Runtime10  # noqa: F811
    trt.Runtime = Runtime
    return trt


def add_fake_inspector(trt, engine_info: dict):
    """Give a fake ``tensorrt`` module a Runtime whose engines' inspector returns ``engine_info``
    (what ``IEngineInspector.get_engine_information(JSON)`` prints) for any serialized engine."""
    import json

    trt.LayerInformationFormat = _Enum("ONELINE", "JSON")

    class Inspector:
        def get_engine_information(self, fmt):
            assert fmt.name == "JSON"
            return json.dumps(engine_info)

    class Engine:
        def create_engine_inspector(self):
            return Inspector()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            assert bytes(blob) == b"serialized-engine"
            return Engine()

    trt.Runtime = Runtime
    return trt
