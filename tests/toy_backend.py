"""A backend in one file: stages run by ONNX's pure-Python reference evaluator.

Registered by one line (see test_export_runtime.py)::

    BACKENDS["onnx-reference"] = BackendEntry("onnx-reference", "toy_backend:OnnxReferenceBackend", ("fp32",), "onnx")
"""
from edgevos.backend import Backend


class OnnxReferenceBackend(Backend):
    name = "onnx-reference"

    def __init__(self, bundle, precision: str = "fp32"):
        from onnx.reference import ReferenceEvaluator

        super().__init__(bundle.specs)
        self.evaluators = {s: ReferenceEvaluator(str(bundle.stage_path(s, precision))) for s in bundle.stage_names}

    def _run(self, spec, feeds):
        outs = self.evaluators[spec.name].run(None, {n: feeds[n] for n in spec.input_names})
        return dict(zip(spec.output_names, outs))
