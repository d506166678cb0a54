"""edgevos.files: atomic writes leave the old file or the new one, and no temporary behind."""
import json
import os
import stat

import pytest

from edgevos import files


def test_write_bytes_text_json_replace_and_create_folders(tmp_path):
    p = tmp_path / "a" / "b" / "x.json"
    files.write_json(p, {"k": 1}, indent=1)
    assert json.loads(p.read_text()) == {"k": 1} and p.read_text() == json.dumps({"k": 1}, indent=1)
    files.write_text(p, "new")
    assert p.read_text() == "new"
    files.write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert os.listdir(p.parent) == ["x.json"]


def test_mode_is_set_or_left_to_the_umask(tmp_path):
    p = files.write_text(tmp_path / "m", "x", mode=0o640)
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    q = files.write_text(tmp_path / "n", "x")
    assert stat.S_IMODE(q.stat().st_mode) == files.umask_mode()


def test_replacing_publishes_on_success_and_discards_on_error(tmp_path):
    p = tmp_path / "w.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with files.replacing(p) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["w.bin"]
    with files.replacing(p) as tmp:
        assert files.is_temporary(tmp.name, "w.bin")
        tmp.write_bytes(b"new")
    assert p.read_bytes() == b"new" and os.listdir(tmp_path) == ["w.bin"]


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "f"
    p.write_text("old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        files.write_text(p, "new")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f"]
