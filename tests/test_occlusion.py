"""OcclusionGuard: an object whose area collapses onto a neighbour is hidden for that frame only."""
import numpy as np
import pytest

from edgevos.programs.occlusion import OcclusionGuard


def _ids(box1, box2, hw=(40, 60)):
    ids = np.zeros(hw, np.uint8)
    for k, (y0, y1, x0, x1) in ((1, box1), (2, box2)):
        if y1 > y0:
            ids[y0:y1, x0:x1] = k
    return ids


def test_a_remnant_on_the_occluder_is_handed_back_and_the_object_returns():
    g = OcclusionGuard()
    for _ in range(3):  # both visible: 2 is 10x10
        out, hidden = g.apply(_ids((5, 25, 5, 30), (10, 20, 35, 45)), [1, 2])
        assert hidden == []
    # object 2 went behind object 1: 4 pixels of it remain, on object 1's previous pixels
    cur = _ids((5, 25, 5, 30), (0, 0, 0, 0))
    cur[10:12, 20:22] = 2
    out, hidden = g.apply(cur, [1, 2])
    assert hidden == [2] and not (out == 2).any() and (out[10:12, 20:22] == 1).all()
    # it comes back where it was, at its full size: visible again
    out, hidden = g.apply(_ids((5, 25, 5, 30), (10, 20, 35, 45)), [1, 2])
    assert hidden == [] and (out == 2).sum() == 100


def test_an_object_that_shrinks_gradually_or_on_background_stays():
    g = OcclusionGuard()
    for s in (10, 9, 8, 7, 6, 5, 4):  # gradual shrinking follows the running area
        out, hidden = g.apply(_ids((5, 25, 5, 30), (10, 10 + s, 35, 35 + s)), [1, 2])
        assert hidden == []
    g.reset()
    g.apply(_ids((5, 25, 5, 30), (10, 20, 35, 45)), [1, 2])
    cur = _ids((5, 25, 5, 30), (10, 12, 35, 37))  # collapsed, but on its own / background pixels
    out, hidden = g.apply(cur, [1, 2])
    assert hidden == [] and (out == 2).sum() == 4


def test_program_option():
    torch = pytest.importorskip("torch")
    from edgevos.errors import InputError
    from edgevos.models.registry import get_family
    from edgevos.runtime.session import Session

    torch.manual_seed(0)
    m = get_family("gfrtm").build(input_size=(64, 96))
    assert Session.from_model(m).program.occlusion is not None  # on by default (several objects only)
    assert Session.from_model(m, occlusion=False).program.occlusion is None
    with pytest.raises(InputError, match="occlusion"):
        Session.from_model(m, occlusion="yes")
