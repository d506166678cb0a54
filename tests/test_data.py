"""DAVIS reader/writer, mask PNG conventions and the synthetic generator."""
import time

import numpy as np
import pytest
from PIL import Image

from edgevos.data import (DAVIS_PALETTE, DavisDataset, SyntheticConfig, make_sequence, read_mask, write_davis,
                          write_mask)
from edgevos.errors import DataError, InputError


# ----------------------------------------------------------------------------- masks

def test_palette_is_the_davis_one():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    np.testing.assert_array_equal(DAVIS_PALETTE[:4], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
    np.testing.assert_array_equal(DAVIS_PALETTE[255], [224, 224, 192])


def test_write_read_round_trip_all_ids(tmp_path):
    m = np.arange(256, dtype=np.uint8).reshape(16, 16)
    p = tmp_path / "sub" / "00000.png"
    write_mask(p, m)
    with Image.open(p) as im:
        assert im.mode == "P"
        assert np.array(im.getpalette()[:12]).tolist() == DAVIS_PALETTE[:4].reshape(-1).tolist()
    np.testing.assert_array_equal(read_mask(p), m)
    assert [f.name for f in p.parent.iterdir()] == ["00000.png"]  # no temporary file left behind


def test_write_mask_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match="2-D"):
        write_mask(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="0..255"):
        write_mask(tmp_path / "a.png", np.full((4, 4), 300))
    with pytest.raises(InputError, match="dtype"):
        write_mask(tmp_path / "a.png", np.zeros((4, 4), np.float32))


def test_grayscale_0_255_is_object_one_and_rgb_palette_colours_are_ids(tmp_path):
    g = np.zeros((5, 7), np.uint8)
    g[1:3, 2:5] = 255
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "g.png"), (g == 255).astype(np.uint8))
    ids = np.array([[0, 1, 2], [3, 255, 1]], np.uint8)
    Image.fromarray(DAVIS_PALETTE[ids]).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), ids)


def test_unreadable_mask_names_the_file(tmp_path):
    bad = tmp_path / "00003.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="00003.png"):
        read_mask(bad)
    with pytest.raises(DataError, match="not found.*nope.png"):
        read_mask(tmp_path / "nope.png")


# ----------------------------------------------------------------------------- DAVIS reader

def test_reader_on_shared_davis2016(davis_root):
    ds = DavisDataset(davis_root)
    assert len(ds.sequences) == 30 and "bear" in ds
    assert DavisDataset(davis_root, "train").sequences == ds.sequences  # ImageSets/train.txt
    seq = ds["bear"]
    assert seq.frame_names[:2] == ["00000", "00001"] and len(seq) == len(seq.frame_names) > 10
    f = seq.frame(0)
    assert f.dtype == np.uint8 and f.shape == (480, 854, 3)
    m = seq.mask(len(seq) - 1)
    assert m.shape == (480, 854) and set(np.unique(m).tolist()) == {0, 1}
    assert seq.object_ids == [1]
    assert seq.frame(-1).shape == f.shape
    with pytest.raises(IndexError):
        seq.frame(len(seq))


def _palette_dataset(root, **kw):
    cfg = SyntheticConfig(height=64, width=96, num_frames=5, num_objects=3, seed=11, **kw)
    seq = make_sequence(cfg)
    write_davis(root, [seq], imageset="val")
    return seq


def test_reader_on_generated_multi_object_palette_data(tmp_path):
    seq = _palette_dataset(tmp_path)
    ds = DavisDataset(tmp_path, "val")
    assert ds.sequences == [seq.name]
    got = ds[seq.name]
    assert got.object_ids == [1, 2, 3] == seq.object_ids
    for i in range(len(seq)):
        np.testing.assert_array_equal(got.mask(i), seq.masks[i])
        assert np.abs(got.frame(i).astype(int) - seq.frames[i]).mean() < 4  # JPEG q95


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found.*nowhere"):
        DavisDataset(tmp_path / "nowhere")
    (tmp_path / "JPEGImages" / "480p").mkdir(parents=True)
    with pytest.raises(DataError, match="Annotations"):
        DavisDataset(tmp_path)
    seq = _palette_dataset(tmp_path / "d")
    with pytest.raises(DataError, match="sequence 'ghost' not found"):
        DavisDataset(tmp_path / "d", ["ghost"])
    import shutil

    shutil.rmtree(tmp_path / "d" / "Annotations" / "480p" / seq.name)
    with pytest.raises(DataError, match=f"missing annotation folder .*{seq.name}"):
        DavisDataset(tmp_path / "d")[seq.name]


def test_mask_size_mismatch_names_the_file(tmp_path):
    seq = _palette_dataset(tmp_path)
    write_mask(tmp_path / "Annotations" / "480p" / seq.name / "00002.png", np.zeros((32, 48), np.uint8))
    s = DavisDataset(tmp_path)[seq.name]
    s.mask(1)
    with pytest.raises(DataError, match="00002.png is 48x32 but its frame .*00002.jpg is 96x64"):
        s.mask(2)


def test_frame_without_mask_names_the_file(tmp_path):
    seq = _palette_dataset(tmp_path)
    (tmp_path / "Annotations" / "480p" / seq.name / "00003.png").unlink()
    with pytest.raises(DataError, match="00003.jpg has no mask.*00003.png"):
        DavisDataset(tmp_path)[seq.name]
    lenient = DavisDataset(tmp_path, allow_missing_masks=True)[seq.name]
    assert lenient.mask(3) is None and lenient.mask(4) is not None


def test_unreadable_png_in_dataset_names_the_file(tmp_path):
    seq = _palette_dataset(tmp_path)
    (tmp_path / "Annotations" / "480p" / seq.name / "00001.png").write_bytes(b"not a png")
    s = DavisDataset(tmp_path)[seq.name]
    with pytest.raises(DataError, match="00001.png"):
        s.mask(1)
    (tmp_path / "JPEGImages" / "480p" / seq.name / "00004.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="00004.jpg"):
        s.frame(4)


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_and_seed_dependent():
    cfg = SyntheticConfig(num_frames=8, seed=5, camera_pan=1.5, noise=2.0)
    a, b = make_sequence(cfg), make_sequence(cfg)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    c = make_sequence(SyntheticConfig(num_frames=8, seed=6, camera_pan=1.5, noise=2.0))
    assert not np.array_equal(a.frames, c.frames)


def test_synthetic_default_is_fast_and_shaped():
    make_sequence(SyntheticConfig(num_frames=2))  # warm-up (OpenCV import)
    t0 = time.perf_counter()
    s = make_sequence(SyntheticConfig())
    dt = time.perf_counter() - t0
    assert dt < 1.0, f"30 frames 240x432 took {dt:.2f} s"
    assert s.frames.shape == (30, 240, 432, 3) and s.frames.dtype == np.uint8
    assert s.masks.shape == (30, 240, 432) and s.masks.dtype == np.uint8
    assert s.frame_names[0] == "00000" and len(s) == 30 and s.name == "synthetic-0000"
    assert s.object_ids == [1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_ground_truth_matches_drawing(seed):
    s = make_sequence(SyntheticConfig(height=96, width=160, num_frames=12, num_objects=3, seed=seed))
    # the mask is the amodal object masks composed back to front
    for t in range(len(s)):
        expect = np.zeros(s.masks[t].shape, np.uint8)
        for k in s.depth_order:
            expect[s.amodal[t, k - 1]] = k
        np.testing.assert_array_equal(s.masks[t], expect)
    # every object is visible in the first frame; background pixels do not change (static camera)
    assert s.object_ids == [1, 2, 3]
    bg = (s.masks == 0).all(axis=0)
    assert bg.any()
    assert (s.frames[:, bg] == s.frames[0, bg]).all()
    # objects move and change scale
    c0 = np.argwhere(s.masks[0] == 1).mean(0)
    c1 = np.argwhere(s.amodal[-1, 0]).mean(0)
    assert np.hypot(*(c1 - c0)) > 5
    areas = s.amodal[:, 0].sum(axis=(1, 2))
    assert areas.max() != areas.min()


def test_synthetic_occlusion_knob():
    occluded = [make_sequence(SyntheticConfig(height=96, width=160, num_frames=20, seed=s)) for s in range(4)]
    # objects overlap at some point: the one behind loses pixels to the one in front
    assert all((o.amodal.sum(axis=1) > 1).any() for o in occluded)
    for s in range(4):
        sep = make_sequence(SyntheticConfig(height=96, width=160, num_frames=20, seed=s, occlusion=False))
        assert not (sep.amodal.sum(axis=1) > 1).any()
        assert sep.object_ids == [1, 2]


def test_synthetic_camera_pan_moves_the_background():
    s = make_sequence(SyntheticConfig(height=64, width=96, num_frames=6, seed=3, camera_pan=3.0))
    bg = (s.masks == 0).all(axis=0)
    assert (np.abs(s.frames[-1, bg].astype(int) - s.frames[0, bg]).mean()) > 2


def test_synthetic_config_validation():
    with pytest.raises(InputError, match="num_objects"):
        SyntheticConfig(num_objects=0)
    with pytest.raises(InputError, match="speed"):
        SyntheticConfig(speed=-1)
