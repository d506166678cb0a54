"""``edgevos train FAMILY``: train a model family on DAVIS-layout folders + synthetic sequences."""
from __future__ import annotations

import argparse


def _size(text: str):
    from edgevos.errors import InputError

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--input-size '{text}' is not HxW (e.g. 256x448)") from None
    return h, w


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("family", choices=["gfrtm"], help="model family")
    p.add_argument("--davis", action="append", default=[], help="DAVIS-layout folder (repeatable)")
    p.add_argument("--heldout", default=None, help="comma-separated sequences never trained on (default: the validation five)")
    p.add_argument("--synthetic", type=int, default=30, help="number of synthetic sequences added")
    p.add_argument("--out", default="runs/gfrtm", help="output folder: cache, checkpoints, log, final weights")
    p.add_argument("--input-size", type=_size, default=(256, 448), help="training resolution HxW (multiple of 32)")
    p.add_argument("--backbone", default="mobilenetv2", choices=["mobilenetv2", "resnet18"])
    p.add_argument("--backbone-weights", default=None, help="torchvision ImageNet state dict for the backbone")
    p.add_argument("--phase1-steps", type=int, default=3000)
    p.add_argument("--phase2-steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr1", type=float, default=1e-3, help="phase 1 learning rate")
    p.add_argument("--lr2", type=float, default=5e-4, help="phase 2 learning rate (paper: 5e-4)")
    p.add_argument("--m1", type=float, default=1.0)
    p.add_argument("--m2", type=float, default=0.0)
    p.add_argument("--ep-T", type=int, default=120, help="epoch at which the margin m reaches m1")
    p.add_argument("--epoch-samples", type=int, default=400, help="samples per epoch for the margin schedule")
    p.add_argument("--phases", default="1,2", help="phases to run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=0, help="frames per sequence (0 = all)")


def main(args) -> int:
    from edgevos.train.gfrtm import HELDOUT, TrainConfig, Trainer

    heldout = tuple(s for s in args.heldout.split(",") if s) if args.heldout is not None else HELDOUT
    cfg = TrainConfig(out=args.out, davis=tuple(args.davis), heldout=heldout, synthetic=args.synthetic,
                      input_size=args.input_size, backbone=args.backbone, backbone_weights=args.backbone_weights,
                      phase1_steps=args.phase1_steps, phase2_steps=args.phase2_steps, batch=args.batch,
                      lr1=args.lr1, lr2=args.lr2, m1=args.m1, m2=args.m2, ep_T=args.ep_T,
                      epoch_samples=args.epoch_samples, threads=args.threads, seed=args.seed,
                      max_frames_per_sequence=args.max_frames)
    path = Trainer(cfg).run(phases=tuple(int(p) for p in args.phases.split(",")))
    print(f"trained weights: {path}")
    return 0
