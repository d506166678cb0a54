"""``edgevos train FAMILY``: train a model family on DAVIS-layout folders + synthetic sequences.

The options every family shares are declared here; each family that trains (its registry entry's
:meth:`~edgevos.models.registry.Family.training`, a :class:`edgevos.train.family.FamilyTraining`)
adds its own as an argument group, builds its TrainConfig from the parsed arguments and trains it.
"""
from __future__ import annotations

import argparse


def _size(text: str):
    from edgevos.parsing import parse_hw

    return parse_hw(text, "--input-size", multiple=32)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgevos.models.registry import FAMILIES

    trained = [f for f in FAMILIES.values() if f.trains]
    p.add_argument("family", choices=[f.name for f in trained], help="model family")
    p.add_argument("--davis", action="append", default=[], help="DAVIS-layout folder (repeatable)")
    p.add_argument("--heldout", default=None, help="comma-separated sequences never trained on (default: the six held-out: bear, car-turn, dance-jump, kite-walk, motocross-bumps, soccerball)")
    p.add_argument("--synthetic", type=int, default=30, help="number of synthetic sequences added")
    p.add_argument("--out", default=None,
                   help="output folder: cache, checkpoints, log, final weights (default: the family's, runs/FAMILY...)")
    p.add_argument("--input-size", type=_size, default=None,
                   help="training resolution HxW, multiple of 32 (default: the family's, in its group below)")
    p.add_argument("--backbone", default="mobilenetv2", choices=["mobilenetv2", "resnet18"])
    p.add_argument("--backbone-weights", default=None, help="torchvision ImageNet state dict for the backbone")
    p.add_argument("--init", default=None,
                   help="start from this checkpoint (what each family takes from it: its group below)")
    p.add_argument("--batch", type=int, default=None, help="samples per step (default: the family's)")
    p.add_argument("--m1", type=float, default=1.0)
    p.add_argument("--m2", type=float, default=0.0)
    p.add_argument("--ep-T", type=int, default=120, help="epoch at which the margin m reaches m1")
    p.add_argument("--epoch-samples", type=int, default=400, help="samples per epoch for the margin schedule")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=0, help="frames per sequence (0 = all)")
    p.add_argument("--composites", type=int, default=0,
                   help="clips made by pasting other training sequences' objects into a training sequence "
                        "(distractors, occlusions; counted as real)")
    p.add_argument("--composite-objects", type=int, default=2,
                   help="most training sequences pasted into one composite clip (default 2)")
    p.add_argument("--max-gap", type=int, default=None,
                   help="largest gap n (frames) between a computed frame and the frame its state is reused on in "
                        "training (default: gfrtm 25, slowfast 5)")
    p.add_argument("--gate-target", default=None, choices=["mask-iou", "agreement", "accuracy"],
                   help="what the reuse gate learns to predict: the object's mask IoU between the two frames "
                        "(paper; the default), the agreement of the reused frame's mask with the computed frame's, "
                        "or (gfrtm) 1 - scale x the IoU the reused mask loses against the truth (accuracy)")
    for fam in trained:
        training = fam.training()
        training.add_arguments(p.add_argument_group(fam.name, training.description or None))


def main(args) -> int:
    from edgevos.models.registry import get_family

    training = get_family(args.family).training()
    path = training.train(training.config(args), args)
    print(f"trained weights: {path}")
    return 0
