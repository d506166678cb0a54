"""A short soak (300 frames) through the full runtime in a child process: no file
descriptor growth, bounded RSS growth after warm-up.  The long run is scripts/soak.py."""
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_common import ROOT, gst_or_skip, ort_bundle  # noqa: E402


def test_short_soak_has_no_fd_growth_and_bounded_rss(tmp_path_factory, tmp_path):
    gst_or_skip()
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--frames", "300", "--every", "50", "--warmup", "100",
         "--bundle", str(ort_bundle(tmp_path_factory)), "--out", str(tmp_path / "work"), "--json", str(out),
         "--max-growth", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads(out.read_text())
    assert rep["run_exit_code"] == 0 and rep["masks_on_disk"] == 300
    start = rep["samples"][0]["fds"]
    assert rep["fds_after_close"] <= start  # every sink, worker and GStreamer pipeline closed its files
    assert rep["fds_max_after_warmup"] <= rep["fds_warm"] + 2  # at most a mask temp file in flight
    assert rep["rss_growth_pct"] < 10 and rep["rss_peak_after_warmup_mb"] < rep["rss_warm_mb"] * 1.1
    assert "RSS after warm-up" in proc.stdout
