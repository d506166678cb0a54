"""Malformed inputs end in a clear error naming the value and the fix, never a traceback:
weights files, boxes, mask PNGs, bundle manifests, unreadable stage files."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevos.errors import InputError

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


# ---------------------------------------------------------------------------------------------
# 9. boxes: finite, in range, at most 254; test:// frames built one at a time
# ---------------------------------------------------------------------------------------------
NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                   st.sampled_from(["inf", "-inf", "nan", "1e400", "", "x", "0x10", "1_0"]))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.lists(NUMBER, min_size=0, max_size=6).map(lambda v: ",".join(map(str, v))), st.text(max_size=20)))
def test_any_box_text_is_a_box_in_range_or_input_error(text):
    from edgevos.data.boxes import MAX_COORD, parse_box

    try:
        box = parse_box(text)
    except InputError as exc:
        assert text in str(exc) and ("x,y,w,h" in str(exc) or "positive" in str(exc) or str(MAX_COORD) in str(exc))
    else:
        assert all(isinstance(v, int) and abs(v) <= MAX_COORD for v in box) and box[2] > 0 and box[3] > 0


@pytest.mark.parametrize("text, words", [("inf,0,10,10", "inf is not a finite number"),
                                         ("0,nan,10,10", "nan is not a finite number"),
                                         ("0,0,1e300,10", "1e+300 is beyond 100000 pixels")])
def test_non_finite_and_huge_boxes_are_named_by_run(text, words, capsys):
    from edgevos.cli import main

    assert main(["run", "test://?frames=2&size=48x64", "--bundle", ".", f"--init-box={text}", "--quiet", "--no-power"]) == 1
    err = capsys.readouterr().err
    assert words in err and text in err and "Traceback" not in err, err


def test_more_than_254_boxes_are_refused_before_grabcut(monkeypatch):
    import edgevos.data.boxes as boxes
    from edgevos.runtime.pipeline import run
    from test_run_cli import ColourSession

    def never(*a, **k):
        raise AssertionError("GrabCut ran before the box count was checked")

    monkeypatch.setattr(boxes, "grabcut_mask", never)
    for n in (255, 256, 1000):
        with pytest.raises(InputError, match=f"{n} boxes given: at most 254 objects"):
            run("test://?frames=2&size=48x64", [], session=ColourSession(), init_box=["1,1,5,5"] * n, power=False)
    boxes.check_box_count(254)
    monkeypatch.undo()
    with pytest.raises(InputError, match="at most 254"):
        boxes.grabcut_mask(np.zeros((8, 8, 3), np.uint8), [(1, 1, 5, 5)] * 255)


def test_long_test_source_is_built_one_frame_at_a_time():
    """test://?frames=400 at 240x432 held whole is ~250 MB; lazily, a few frames."""
    import tracemalloc

    from edgevos.data.synthetic import SyntheticConfig, make_sequence
    from edgevos.runtime.sources import open_source

    tracemalloc.start()
    try:
        src = open_source("test://?frames=400&objects=2")
        frames = []
        for f in src:
            frames.append(f) if f.index < 3 else None
            if f.index == 10:
                break
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40e6, f"{peak / 1e6:.0f} MB for the first frames of test://?frames=400"
    assert len(src) == 400 and src.size == (240, 432)
    assert (src.first_mask == frames[0].gt).all() and [f.index for f in frames] == [0, 1, 2]
    small = open_source("test://?frames=6&size=48x64&objects=3&seed=2")
    seq = make_sequence(SyntheticConfig(height=48, width=64, num_frames=6, num_objects=3, seed=2))
    for _ in range(2):  # the same frames as the whole sequence, on every pass
        got = list(small)
        assert len(got) == 6 and all((f.rgb == seq.frames[i]).all() and (f.gt == seq.masks[i]).all()
                                     for i, f in enumerate(got))


# ---------------------------------------------------------------------------------------------
# 10. malformed files: a mask PNG too large to decode, bundle manifests, unreadable stage files
# ---------------------------------------------------------------------------------------------
def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height (8-bit palette) with one tiny IDAT: only the header is real."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"PLTE", b"\0\0\0" * 2)
                     + chunk(b"IDAT", zlib.compress(b"\0" * min(width + 1, 4096))) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("size", [(12_000, 9_000), (20_000, 20_000), (2**31 - 1, 2**31 - 1)])
def test_mask_png_too_large_is_refused_by_its_header(tmp_path, size):
    import time

    from edgevos.data.masks import read_mask

    png = _png_header(tmp_path / "bomb.png", *size)
    t0 = time.perf_counter()
    with pytest.raises(InputError) as ei:
        read_mask(png)
    assert time.perf_counter() - t0 < 2  # never decoded
    msg = str(ei.value)
    assert str(png) in msg and "100 megapixels" in msg, msg
    assert read_mask(_png_header(tmp_path / "ok.png", 64, 1)).shape == (1, 64)


@pytest.fixture
def toy_bundle(tmp_path):
    from edgevos.bundle import write_bundle
    from edgevos.stages import StageSpec, TensorSpec

    root = tmp_path / "bundle"
    root.mkdir()
    specs = [StageSpec("a", (TensorSpec("x", (1, 2)),), (TensorSpec("y", (1, 2)),))]
    (root / "a.onnx").write_bytes(b"fp32-a")
    write_bundle(root, "toy", {"tau": 0.7}, (32, 48), {"mean": [0, 0, 0], "std": [1, 1, 1]}, specs,
                 {"a": {"fp32": root / "a.onnx"}})
    return root


def _edit(root: Path, fn) -> None:
    import json

    m = json.loads((root / "manifest.json").read_text())
    fn(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _set(key, value):
    def edit(m):
        target, k = (m["stages"][0], key[1:]) if key.startswith(".") else (m, key)
        target[k] = value
    return edit


MALFORMED = [  # (edit, words in the error)
    (_set("family", None), "'family' is null, not a non-empty string"),
    (_set("family", 3), "'family' is 3"),
    (_set("input_size", "32x48"), "'input_size' is \"32x48\", not [height, width]"),
    (_set("input_size", [32, None]), "'input_size' is [32, null]"),
    (_set("input_size", [32, True]), "'input_size'"),
    (_set("input_size", [32, -48]), "'input_size'"),
    (_set("stages", None), "'stages' is null"),
    (_set("stages", []), "'stages' is []"),
    (_set("stages", ["a"]), "'stages'"),
    (_set(".files", ["a.onnx"]), "'stages'"),
    (_set(".inputs", None), "'stages'"),
    (_set("files", None), "'files' is null"),
    (_set("files", {"a.onnx": 5}), "'files'"),
    (_set("precisions", "fp32"), "'precisions' is \"fp32\""),
    (_set("config", None), "'config' is null, not an object"),
    (_set("config", [1]), "'config'"),
    (_set("normalization", {"mean": [0, 0, 0], "std": [0, 1, 1]}), "'normalization'"),
    (_set("weights_file", 7), "'weights_file' is 7"),
    (_set("preset", {"x": 1}), "'preset'"),
    (lambda m: m.pop("files"), "lacks 'files'"),
]


@pytest.mark.parametrize("edit, words", MALFORMED, ids=[w for _, w in MALFORMED])
def test_malformed_manifest_fields_are_named(toy_bundle, edit, words):
    from edgevos.bundle import load_bundle
    from edgevos.errors import BundleError

    _edit(toy_bundle, edit)
    with pytest.raises(BundleError) as ei:
        load_bundle(toy_bundle)
    assert words in str(ei.value) and "re-export" in str(ei.value), str(ei.value)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(["family", "input_size", "stages", "files", "config", "normalization", "precisions",
                            "preset", "weights_file", "parity", "quantization"]),
       value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                          max_leaves=8))
def test_any_manifest_value_loads_or_is_a_bundle_error(tmp_path_factory, key, value):
    """Any JSON value in a field: the bundle loads (the manifest digest then refuses the edit)
    or a BundleError, never a TypeError / KeyError from deeper down."""
    import shutil

    from edgevos.bundle import write_bundle
    from edgevos.errors import BundleError
    from edgevos.stages import StageSpec, TensorSpec

    root = tmp_path_factory.mktemp("b")
    shutil.rmtree(root)
    root.mkdir()
    (root / "a.onnx").write_bytes(b"fp32-a")
    write_bundle(root, "toy", {"tau": 0.7}, (32, 48), {"mean": [0, 0, 0], "std": [1, 1, 1]},
                 [StageSpec("a", (TensorSpec("x", (1, 2)),), (TensorSpec("y", (1, 2)),))], {"a": {"fp32": root / "a.onnx"}})
    from edgevos.bundle import load_bundle

    before = load_bundle(root).manifest.get(key, "absent")
    _edit(root, _set(key, value))
    try:
        loaded = load_bundle(root)
    except BundleError as exc:
        assert "re-export" in str(exc)
    else:
        assert loaded.manifest[key] == value == before  # only an unchanged value loads


def test_deeply_nested_manifest_is_refused(toy_bundle):
    from edgevos.bundle import load_bundle
    from edgevos.errors import BundleError

    text = (toy_bundle / "manifest.json").read_text()
    (toy_bundle / "manifest.json").write_text(text[:-2] + ', "deep": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(BundleError, match="nested too deeply.*re-export"):
        load_bundle(toy_bundle)


@pytest.mark.parametrize("edit", [_set("config", {"tau": 1.0}), _set("input_size", [64, 48]),
                                  _set(".precision", {"fp32": "int8-cpu"}), _set("weights_file", "a.onnx"),
                                  _set("normalization", {"mean": [1, 1, 1], "std": [1, 1, 1]})])
def test_behaviour_fields_are_covered_by_the_manifest_digest(toy_bundle, edit):
    from edgevos.bundle import load_bundle
    from edgevos.errors import BundleError

    assert load_bundle(toy_bundle).config == {"tau": 0.7}
    _edit(toy_bundle, edit)
    with pytest.raises(BundleError, match="manifest.json does not match its manifest_sha256.*re-export"):
        load_bundle(toy_bundle)


def test_unreadable_stage_file_is_named(toy_bundle, monkeypatch):
    import builtins

    import edgevos.bundle as bundle_mod
    from edgevos.errors import BundleError

    target = toy_bundle / "a.onnx"
    if os.geteuid() != 0:
        target.chmod(0)
    else:  # root reads anything: the open() the hashing does fails as it would for a user
        def guarded(path, *a, **k):
            if Path(path).resolve() == target.resolve():
                raise PermissionError(13, "Permission denied", str(path))
            return builtins.open(path, *a, **k)
        monkeypatch.setattr(bundle_mod, "open", guarded, raising=False)
    with pytest.raises(BundleError) as ei:
        bundle_mod.load_bundle(toy_bundle)
    msg = str(ei.value)
    assert "'a.onnx' cannot be read (Permission denied)" in msg and "chmod" in msg, msg
