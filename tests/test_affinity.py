"""Inference on its own cores, I/O threads on the others (edgevos.runtime.affinity, run --pin-inference)."""
import os
import sys
import threading
import time

import numpy as np
import pytest

from edgevos.errors import InputError
from edgevos.runtime.affinity import CoreSplit, parse_cores, thread_affinity

linux_2cores = pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and at least two cores available to the process",
)


def test_parse_cores():
    assert parse_cores("0") == {0} and parse_cores("0,2") == {0, 2} and parse_cores("1-3") == {1, 2, 3}
    for bad in ("", "x", "-1", "1,,a"):
        with pytest.raises(InputError, match="core numbers like 0"):
            parse_cores(bad)


@linux_2cores
def test_split_pins_inference_and_moves_every_other_thread_then_restores():
    allowed = os.sched_getaffinity(0)
    core = min(allowed)
    before_main = thread_affinity()
    split = CoreSplit({core})
    pool_ready, stop = threading.Event(), threading.Event()
    seen = {}

    def worker(name):
        seen[name] = threading.get_native_id()
        pool_ready.set()
        stop.wait(10)

    pool = threading.Thread(target=worker, args=("pool",), daemon=True)  # started while the "session" is built
    pool.start()
    pool_ready.wait(5)
    split.mark_inference()
    pool_ready.clear()
    io = threading.Thread(target=worker, args=("io",), daemon=True)  # e.g. a decoder thread
    io.start()
    pool_ready.wait(5)
    try:
        assert split.apply() >= 2
        assert thread_affinity() == {core}
        assert thread_affinity(seen["pool"]) == {core}
        assert thread_affinity(seen["io"]) == allowed - {core}
        assert split.apply() == 0  # nothing left to move
        assert split.describe()["io_cores"] == sorted(allowed - {core})
    finally:
        split.restore()
        stop.set()
    assert thread_affinity() == before_main
    assert thread_affinity(seen["io"]) == allowed


def test_split_refuses_bad_core_sets():
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else {0}
    if not hasattr(os, "sched_setaffinity"):
        with pytest.raises(InputError, match="needs Linux"):
            CoreSplit({0})
        return
    with pytest.raises(InputError, match=r"cores \[4096\] are not available"):
        CoreSplit({4096})
    with pytest.raises(InputError, match="leaves no core for decoding"):
        CoreSplit(allowed)


class _RecordingSession:
    """Test double: an all-background mask each frame; records which cores the step and the mask writer had."""

    def __init__(self):
        self.step_cores, self.writer_cores = [], []

    def start(self, frame, mask):
        return self.step(frame)

    def step(self, frame):
        from edgevos.programs.base import StepResult

        self.step_cores.append(thread_affinity())
        for t in threading.enumerate():
            if t.name == "edgevos-masks" and t.native_id:
                self.writer_cores.append(os.sched_getaffinity(t.native_id))
        time.sleep(0.002)
        m = np.zeros(frame.shape[:2], np.uint8)
        return StepResult(len(self.step_cores) - 1, m, m[None].astype(np.float32), [1], stage_ms={}, total_ms=2.0)


@linux_2cores
def test_run_pipeline_keeps_inference_on_its_core_and_the_mask_writer_off_it(tmp_path):
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    allowed = os.sched_getaffinity(0)
    core = max(allowed)
    split = CoreSplit({core})
    session = _RecordingSession()
    split.mark_inference()
    sink = open_sink(f"masks://{tmp_path / 'm'}")
    summary = run_pipeline(open_source("test://?frames=12&size=48x64"), [sink], session, warmup=3,
                           handle_signals=False, core_split=split)
    assert summary.exit_code == 0 and summary.affinity["inference_cores"] == [core]
    assert session.step_cores and all(c == {core} for c in session.step_cores)
    assert session.writer_cores and all(c == allowed - {core} for c in session.writer_cores[1:])
    assert len(list((tmp_path / "m").glob("*.png"))) == 12
    assert thread_affinity() == allowed  # restored


def test_demo_pinning_choice():
    from edgevos.demo import _pinning

    assert _pinning("none", None) == (None, None) and _pinning(None, 2) == (None, 2)
    assert _pinning("0,1", 2) == ({0, 1}, 2)
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    auto = _pinning("auto", None)
    if len(allowed) >= 2 and sys.platform.startswith("linux"):
        assert auto == ({allowed[-1]}, 1)  # one inference thread on the last core
        assert _pinning("auto", 2) == (None, 2)  # two inference threads: nothing to split on 2 cores
    else:
        assert auto == (None, None)


@linux_2cores
def test_cli_run_pin_inference_sets_one_thread_per_core_and_reports_it(monkeypatch, tmp_path, capsys):
    """`edgevos run ... --pin-inference N`: the session gets one intra-op thread per pinned core, the
    run's log records the split, and every thread is unpinned again afterwards."""
    import json

    import edgevos.runtime.session as session_mod
    from edgevos.cli import main

    seen = {}

    def fake_from_bundle(cls, *a, **k):
        seen.update(k)
        return _RecordingSession()

    monkeypatch.setattr(session_mod.Session, "from_bundle", classmethod(fake_from_bundle))
    core = max(os.sched_getaffinity(0))
    log = tmp_path / "run.json"
    code = main(["run", "test://?frames=8&size=48x64", f"masks://{tmp_path / 'm'}", "--bundle", str(tmp_path),
                 "--pin-inference", str(core), "--log", str(log), "--quiet", "--no-power"])
    assert code == 0, capsys.readouterr().out
    assert seen["threads"] == 1
    assert json.loads(log.read_text())["summary"]["affinity"]["inference_cores"] == [core]
    assert thread_affinity() == os.sched_getaffinity(0) and len(os.sched_getaffinity(0)) >= 2
    capsys.readouterr()
    assert main(["run", "test://", "--bundle", str(tmp_path), "--pin-inference", "first"]) != 0
    assert "--pin-inference 'first': give core numbers like 0" in capsys.readouterr().err
