"""Composite training clips shared by the trainers: training sequences with the objects of other
training sequences pasted into them (occluders, distractors, objects of other sizes), so a decoder
learns scenes with several objects from the single-object DAVIS 2016 videos.

Only the sequences given take part: callers pass their training split, never a held-out one.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from edgevos.errors import InputError


def composite_clips(train: Sequence, count: int, seed: int, size: Tuple[int, int], max_pasted: int = 2) -> List:
    """``count`` clips, each one of ``train`` with the objects of 1 to ``max_pasted`` others pasted
    into it (:func:`edgevos.data.make_composite` at ``size``, placements from the clip's seed).

    Args:
        train: training sequences (never held-out ones).
        count: clips to make (0: none).
        seed: picks the scenes, the pasted sequences and their placements.
        size: (H, W) of the clips' frames.
        max_pasted: most sequences pasted into one clip (the clip holds up to ``max_pasted + 1`` objects).

    Returns:
        The clips (:class:`edgevos.data.CompositeSequence`), named ``composite-<i>-<scene>+<others>``.
    """
    from edgevos.data import make_composite

    if count and len(train) < 2:
        raise InputError(f"--composites {count}: needs at least 2 training sequences "
                         f"(got {len(train)}); add --davis folders or drop --composites")
    if max_pasted < 1:
        raise InputError(f"--composite-objects {max_pasted}: paste at least 1 sequence into each clip")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        k = 1 + int(rng.integers(0, max_pasted))
        pick = rng.choice(len(train), size=min(k + 1, len(train)), replace=False)
        scene, others = train[int(pick[0])], [train[int(j)] for j in pick[1:]]
        name = f"composite-{i:03d}-" + "+".join(q.name for q in [scene] + others)
        out.append(make_composite(scene, others, seed=int(rng.integers(1 << 30)), scale_to=size, name=name))
    return out
