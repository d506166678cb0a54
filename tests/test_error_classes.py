"""Each failure has the error class of what failed: a CUDA or TensorRT failure is a DeviceError
(not a source error), using a closed output or a pipeline description without an appsink is
an InputError.  The exit code stays 1 for all of them; the run summary names the kind."""
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevos.errors import DeviceError, EdgevosError, InputError, SourceError

sys.path.insert(0, str(Path(__file__).parent))
from test_run_cli import ColourSession  # noqa: E402


def test_cuda_errors_are_device_errors_not_source_errors():
    from edgevos.jetson.trtinfo import CudaError

    assert issubclass(CudaError, DeviceError) and issubclass(DeviceError, EdgevosError)
    assert not issubclass(CudaError, SourceError)


class _FailingDevice(ColourSession):
    def step(self, frame):
        if self.n == 2:
            raise DeviceError("TensorRT execute_async_v3 failed for stage 'decode'")
        return super().step(frame)


def test_a_device_failure_mid_run_is_an_error_not_a_source_error(tmp_path):
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    sink = open_sink(f"masks://{tmp_path / 'm'}")
    s = run_pipeline(open_source("test://?frames=10&size=64x96"), [sink], _FailingDevice())
    assert s.stopped_by == "error" and s.exit_code == 1 and "execute_async_v3" in s.error
    assert len(list((tmp_path / "m").glob("*.png"))) == 3 and sink.closed


def test_writing_to_a_closed_output_is_an_input_error(tmp_path):
    from edgevos.runtime.sinks import open_sink

    for uri in (f"masks://{tmp_path / 'm'}", f"json://{tmp_path / 's.jsonl'}"):
        sink = open_sink(uri)
        sink.close()
        with pytest.raises(InputError, match="write after close"):
            sink.write(0, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))


def test_a_description_without_appsink_is_an_input_error():
    from reliability_common import gst_or_skip

    gst_or_skip()
    from edgevos.runtime.sources import open_source

    with pytest.raises(InputError, match="no 'appsink name=sink'"):
        open_source("rtsp://127.0.0.1:9/x", description="videotestsrc num-buffers=1 ! fakesink")
