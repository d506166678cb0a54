"""Multi-object composites: exact ground truth from real single-object sequences, identity swaps."""
import numpy as np
import pytest

from edgevos.data import Placement, identity_swap_rate, make_composite, make_sequence, SyntheticConfig
from edgevos.errors import InputError


def _single(seed, n=6):
    s = make_sequence(SyntheticConfig(height=48, width=64, num_frames=n, num_objects=1, seed=seed, name=f"s{seed}"))
    return s


def test_pasted_objects_keep_their_pixels_and_occlude_what_is_behind():
    scene, other = _single(1), _single(2)
    pl = Placement(height=0.5, start=(0.5, 0.5), end=(0.5, 0.5))
    clip = make_composite(scene, [other], placements=[pl])
    assert clip.object_ids == [1, 2] and len(clip) == len(scene)
    for t in range(len(clip)):
        ids, frame = clip.mask(t), clip.frame(t)
        # the scene's object is whatever of it stays visible
        assert not ((ids == 1) & ~(scene.mask(t) > 0)).any()
        assert ((ids == 2) | (ids == 1)).sum() >= (ids == 2).sum()
        # outside the pasted object the scene's frame is untouched
        np.testing.assert_array_equal(frame[ids != 2], scene.frame(t)[ids != 2])
        assert (ids == 2).any()
    one = clip.single(2)
    assert one.object_ids == [1] and np.array_equal(one.mask(3), (clip.mask(3) == 2).astype(np.uint8))
    big = make_composite(scene, [other], placements=[pl], scale_to=(96, 128))
    assert big.frame(0).shape == (96, 128, 3) and big.mask(0).shape == (96, 128)
    with pytest.raises(InputError, match="placements"):
        make_composite(scene, [other], placements=[pl, pl])


def test_identity_swap_rate_counts_masks_on_the_wrong_object():
    gt = [np.array([[1, 1, 2, 2]], np.uint8)] * 4
    right = [g.copy() for g in gt]
    swapped = [np.array([[2, 2, 1, 1]], np.uint8)] * 4
    assert identity_swap_rate(gt, right, [1, 2]) == 0.0
    assert identity_swap_rate(gt, swapped, [1, 2]) == 1.0
    half = [gt[0], gt[1], swapped[2], gt[3]]  # frames 1..2 scored: one of them swapped
    assert identity_swap_rate(gt, half, [1, 2]) == 0.5
