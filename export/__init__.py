"""edgevos.export: per-stage ONNX export, INT8 calibration, TensorRT builds, bundles.

``edgevos.export.bundle`` (loading and verifying bundles) is torch-free; exporting
needs ``pip install 'edgevos[export]'``.
"""
