"""Data I/O: DAVIS-layout folders, mask PNGs, synthetic sequences.

Everything here imports numpy only at import time; OpenCV and Pillow are
loaded when a file is read or written.
"""
from edgevos.data.boxes import grabcut_mask, parse_box
from edgevos.data.masks import DAVIS_PALETTE, VOID, object_ids, read_mask, write_mask
from edgevos.data.davis import DavisDataset, DavisSequence, FirstFrames, VideoSequence, write_davis
from edgevos.data.synthetic import SyntheticConfig, SyntheticSequence, make_sequence
from edgevos.data.composite import CompositeSequence, Placement, identity_swap_rate, make_composite

__all__ = [
    "grabcut_mask", "parse_box",
    "DAVIS_PALETTE", "VOID", "object_ids", "read_mask", "write_mask",
    "VideoSequence", "FirstFrames", "DavisDataset", "DavisSequence", "write_davis",
    "SyntheticConfig", "SyntheticSequence", "make_sequence",
    "CompositeSequence", "Placement", "make_composite", "identity_swap_rate",
]
