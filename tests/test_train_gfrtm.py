"""G-FRTM-fast training: a few steps end to end, single process and under torchrun."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def _train_args(out):
    return ["train", "gfrtm", "--synthetic", "3", "--max-frames", "6", "--out", str(out),
            "--phase1-steps", "4", "--phase2-steps", "3", "--batch", "2", "--input-size", "128x224"]


def test_train_few_steps_checkpoint_resume_and_final_weights(tmp_path):
    from edgevos.cli import main
    from edgevos.models.weights import load_checkpoint

    assert main(_train_args(tmp_path / "run")) == 0
    ck = load_checkpoint("gfrtm", tmp_path / "run" / "gfrtm_final.pt")
    assert tuple(ck["config"]["input_size"]) == (128, 224)
    assert all(n.startswith("synthetic") for n in ck["meta"]["sequences"])
    # resume: a finished run has nothing left to do and writes the same final weights
    assert main(_train_args(tmp_path / "run")) == 0
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert any('"phase": 1' in line for line in log) and any('"phase": 2' in line for line in log)


@pytest.mark.slow
def test_torchrun_two_processes_average_gradients(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "edgevos"] + _train_args(tmp_path / "ddp"),
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "ddp" / "gfrtm_final.pt").is_file()
    assert len((tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()) >= 1  # rank 0 only
