"""The exporter's progress goes to the ``edgevos`` logger (stderr, -v/-q), in a spawned process
too; results (the parity report, where the bundle was written) go to stdout; quantizing leaves
the root logger as it was."""
import logging
import subprocess

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxslim")

from export_toy import register_toy_family  # noqa: E402

from edgevos.cli import main as cli  # noqa: E402
from edgevos.errors import EdgevosError  # noqa: E402


def _export(tmp_path, name, *flags):
    out = tmp_path / name
    argv = ["export", "--family", "toy", "--precision", "fp32,int8-cpu", "--calib", "test://3", "--calib-frames",
            "12", "--input-size", "64x96", "--heldout-frames", "6", "--out", str(out), *flags]
    assert cli(argv) == 0
    return out


def test_export_progress_is_logged_and_results_printed(tmp_path, monkeypatch, capsys):
    register_toy_family(monkeypatch)
    root = logging.getLogger()
    before = (root.level, list(root.handlers), list(root.filters))

    out = _export(tmp_path, "plain")
    plain = capsys.readouterr()
    assert plain.err.count("calibration: 2 sequence(s)") == 1 and plain.err.count(f"exported toy to {out}") == 1
    assert "parity: " in plain.err
    assert "INFO:" not in plain.err and "WARNING:" not in plain.err  # no root handler repeating our lines
    assert "calibration" not in plain.out and "per-stage parity" in plain.out and f"wrote {out}\n" in plain.out
    assert (root.level, list(root.handlers), list(root.filters)) == before  # quantizing touched nothing

    out = _export(tmp_path, "quiet", "-q")
    quiet = capsys.readouterr()
    assert "calibration" not in quiet.err and "exported" not in quiet.err
    assert "per-stage parity" in quiet.out and f"wrote {out}\n" in quiet.out

    _export(tmp_path, "verbose", "-v")
    verbose = capsys.readouterr()
    assert "calibration: 2 sequence(s)" in verbose.err and "debug: per-stage parity" in verbose.err


def test_spawned_export_gets_the_callers_log_level(tmp_path, monkeypatch):
    from edgevos import export_bundle

    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 3)

    monkeypatch.setattr(subprocess, "run", fake_run)
    logger = logging.getLogger("edgevos")
    for level in (logging.WARNING, logging.DEBUG):
        monkeypatch.setattr(logger, "level", level)
        with pytest.raises(EdgevosError, match="exit code 3"):
            export_bundle(tmp_path / f"o{level}", "gfrtm", isolate=True)
    assert [c[-1] for c in calls] == [str(logging.WARNING), str(logging.DEBUG)]


def test_spawned_export_logs_its_progress(tmp_path):
    """A real export in a spawned process, its output in a log file: the progress lines are
    there at the caller's level (INFO), in the command line's form."""
    from edgevos import export_bundle
    from edgevos.console_log import start_console_log, stop_console_log

    log = tmp_path / "export.log"
    handler = start_console_log(logging.INFO)
    try:
        out = export_bundle(tmp_path / "b", "gfrtm", precisions=["fp32"], calib_frames=4, input_size="128x224",
                            parity=False, progress=False, isolate=True, log=log)
    finally:
        stop_console_log(handler)
    text = log.read_text()
    assert "calibration: " in text and f"exported gfrtm to {out}" in text
    assert "INFO:" not in text
