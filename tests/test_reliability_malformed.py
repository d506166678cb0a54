"""Malformed inputs end in a clear error naming the value and the fix, never a traceback:
weights files, boxes, mask PNGs, bundle manifests, unreadable stage files."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_common import ROOT  # noqa: E402

EDGEVOS = [sys.executable, "-m", "edgevos"]


class Payload:
    """Unpickling this runs a shell command (touches the marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + str(self.marker),))


# ---------------------------------------------------------------------------------------------
# 8. --backbone-weights goes through the safe loader
# ---------------------------------------------------------------------------------------------
def test_malicious_backbone_weights_are_refused_by_both_verbs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"features.0.0.weight": Payload(marker)}, fh)
    (tmp_path / "src.pth").write_bytes(b"x")
    for argv in (["export", "--family", "gfrtm", "--backbone-weights", str(evil), "--out", str(tmp_path / "b")],
                 ["import-weights", str(tmp_path / "src.pth"), "--backbone-weights", str(evil),
                  "--out", str(tmp_path / "w.pt")]):
        proc = subprocess.run(EDGEVOS + argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
        err = proc.stderr
        assert proc.returncode == 2, (argv[0], proc.returncode, err)
        assert "Traceback" not in err and "False" not in err, err  # never advise weights_only=False
        assert "--backbone-weights" in err and str(evil) in err and "refused" in err and "never executed" in err
        assert "torchvision" in err  # the fix
    assert not marker.exists()
    assert not (tmp_path / "b").exists() and not (tmp_path / "w.pt").exists()
