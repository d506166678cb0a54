"""Bundles: manifest contents and verification (tampered, missing, extra file, newer format, path escape)."""
import json
import shutil

import numpy as np
import pytest

from edgevos.errors import BundleError
from edgevos.bundle import FORMAT_VERSION, load_bundle, sha256, write_bundle
from edgevos.stages import StageSpec, TensorSpec

SPECS = [
    StageSpec("a", (TensorSpec("x", (1, 2)),), (TensorSpec("y", (1, 2)),)),
    StageSpec("b", (TensorSpec("y", (1, 2)),), (TensorSpec("z", (1, 1)),)),
]


@pytest.fixture
def bundle_dir(tmp_path):
    root = tmp_path / "bundle"
    root.mkdir()
    files = {}
    for s in SPECS:
        (root / f"{s.name}.onnx").write_bytes(b"fp32-" + s.name.encode())
        (root / f"{s.name}.int8-cpu.onnx").write_bytes(b"int8-" + s.name.encode())
        files[s.name] = {"fp32": root / f"{s.name}.onnx", "int8-cpu": root / f"{s.name}.int8-cpu.onnx"}
    files["b"]["int8-cpu"] = files["b"]["fp32"]  # stage b kept float
    write_bundle(
        root, "toy", {"width": 8}, (32, 48), {"mean": [0, 0, 0], "std": [1, 1, 1]}, SPECS, files,
        calibration={"frames": 12, "sequences": [{"name": "s0", "frames": 12}]},
        parity={"stages": [{"stage": "a", "snr_db": np.float32(30.5)}]},
        preset="tiny", stage_precision={"int8-cpu": {"b": "fp32"}},
    )
    (root / "b.int8-cpu.onnx").unlink()
    # rewrite without the unused file
    write_bundle(root, "toy", {"width": 8}, (32, 48), {"mean": [0, 0, 0], "std": [1, 1, 1]}, SPECS, files,
                 calibration={"frames": 12}, parity={"stages": []}, preset="tiny",
                 stage_precision={"int8-cpu": {"b": "fp32"}})
    return root


def test_manifest_contents(bundle_dir):
    b = load_bundle(bundle_dir)
    m = b.manifest
    assert m["format_version"] == FORMAT_VERSION and m["family"] == "toy" and m["preset"] == "tiny"
    assert b.input_size == (32, 48) and b.precisions == ["fp32", "int8-cpu"]
    assert b.specs == SPECS
    assert b.stage_path("a", "int8-cpu").name == "a.int8-cpu.onnx"
    assert b.stage_path("b", "int8-cpu").name == "b.onnx" and b.stage_precision("b", "int8-cpu") == "fp32"
    assert set(m["files"]) == {"a.onnx", "a.int8-cpu.onnx", "b.onnx", "parity.json"}
    assert m["files"]["a.onnx"] == sha256(bundle_dir / "a.onnx")
    assert {"torch", "onnx", "onnxruntime", "onnxslim"} <= set(m["tools"])
    assert json.loads((bundle_dir / "parity.json").read_text()) == {"stages": []}
    with pytest.raises(BundleError, match="no 'int8-trt' file for stage 'a'.*--precision int8-trt"):
        b.stage_path("a", "int8-trt")


def test_tampered_file(bundle_dir):
    (bundle_dir / "a.int8-cpu.onnx").write_bytes(b"evil")
    with pytest.raises(BundleError, match=r"'a\.int8-cpu\.onnx' does not match its SHA-256.*re-export"):
        load_bundle(bundle_dir)


def test_missing_file(bundle_dir):
    (bundle_dir / "b.onnx").unlink()
    with pytest.raises(BundleError, match=r"'b\.onnx' listed in the manifest is missing.*re-export"):
        load_bundle(bundle_dir)


def test_extra_file(bundle_dir):
    (bundle_dir / "sub").mkdir()
    (bundle_dir / "sub" / "x.onnx").write_bytes(b"?")
    with pytest.raises(BundleError, match=r"'sub/x\.onnx' is not listed in the manifest.*re-export"):
        load_bundle(bundle_dir)


def _edit(bundle_dir, fn):
    p = bundle_dir / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m))


def test_newer_format_refused(bundle_dir):
    _edit(bundle_dir, lambda m: m.update(format_version=FORMAT_VERSION + 1, edgevos_version="9.9"))
    with pytest.raises(BundleError, match=rf"format_version {FORMAT_VERSION + 1}.*newer.*upgrade edgevos"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("rel", ["../outside.onnx", "/etc/passwd", "sub/../../x.onnx"])
def test_path_escape_rejected(bundle_dir, rel):
    (bundle_dir.parent / "outside.onnx").write_bytes(b"x")

    def evil(m):
        m["stages"][0]["files"]["fp32"] = rel
        m["files"][rel] = "0" * 64

    _edit(bundle_dir, evil)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(bundle_dir)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "missing")


def test_copy_of_bundle_loads(bundle_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle_dir, dst)
    assert load_bundle(dst / "manifest.json").root == dst
