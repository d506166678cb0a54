"""GStreamer and PyTorch in one process: torch's exceptions must still unwind.

libgstreamer pulls in libunwind.so.8; without edgevos.runtime.sources.gst()
keeping libgcc_s's unwinder first, ``torch.onnx.export`` and ``torch.load``
abort the process once GStreamer is initialised (seen with numpy imported first).
"""
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("gi")

CODE = """
import numpy
from edgevos.runtime.sources import gst
gst()
import torch
m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, groups=8))
torch.onnx.export(m, (torch.randn(1, 3, 32, 32),), r'{onnx}', dynamo=False)
torch.save({{'a': torch.ones(3)}}, r'{pt}')
assert torch.load(r'{pt}', weights_only=True)['a'].sum() == 3
print('survived')
"""


def test_torch_export_and_load_after_gstreamer_init(tmp_path):
    code = CODE.format(onnx=tmp_path / "m.onnx", pt=tmp_path / "t.pt")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert "survived" in out.stdout
