"""edgevos.export: per-stage ONNX export, INT8 calibration, TensorRT builds, bundles.

``edgevos.bundle`` (loading and verifying bundles) is torch-free; exporting
needs ``pip install 'edgevos[export]'``.

Modules (import what you use; nothing heavy is imported here):

* ``onnx_export``  ``export_stages(modules, specs, out_dir, opset=17, real_feeds=None)``:
  one checked, onnxslim-simplified ONNX per stage, verified against PyTorch (1e-4 relative).
* ``calibrate``    ``RecordingBackend``, ``collect_calibration(program_factory, backend, sequences, max_frames)``,
  ``open_sequences(source)`` (DAVIS folder, video + first mask, ``test://``).
* ``quantize``     ``quantize_stage(fp32_path, out_path, spec, feeds, "int8-trt" | "int8-cpu", method, keep_float)``.
* ``trt_float16`` ``float16_between_qdq(model)``: the float compute of an int8-trt graph in FP16
  (FP32 I/O and Q/DQ scales), the ``int8-trt-f16`` files of ``--trt-float fp16``.
* ``parity``       ``stage_parity``, ``end_to_end``, ``format_report``: |diff|, SNR, mask IoU, J&F change.
* ``bundle``       ``write_bundle``, ``load_bundle`` -> ``Bundle`` (hash-verified).
* ``tensorrt``     ``BuildOptions``, ``build_bundle_engines``, ``engine_name``, ``write_build_script``.
* ``exporter``   ``export_bundle(out, family, ...)``: the whole export (the ``edgevos export`` verb is ``edgevos.export_cli``).
* ``benchmark``    ``python -m edgevos.export.benchmark --resnet 256x448 | --bundle DIR``.
"""
