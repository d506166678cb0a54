"""edgevos.runtime: backends, ring buffers, reuse-gate step programs, sessions, GStreamer I/O.

torch-free: a deployment needs numpy and ONNX Runtime or TensorRT only.
"""
