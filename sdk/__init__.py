"""edgevos: semi-supervised video object segmentation on NVIDIA Jetson.

Importing the package never imports torch, GStreamer or TensorRT: those are
loaded where they are used, so a deployment needs only numpy and ONNX Runtime
(or TensorRT).
"""
__version__ = "0.1.0"

from edgevos.errors import EdgevosError  # noqa: E402,F401
