"""``edgevos train FAMILY``: train a model family on DAVIS-layout folders + synthetic sequences."""
from __future__ import annotations

import argparse


def _size(text: str):
    from edgevos.parsing import parse_hw

    return parse_hw(text, "--input-size", multiple=32)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("family", choices=["gfrtm", "slowfast"], help="model family")
    p.add_argument("--davis", action="append", default=[], help="DAVIS-layout folder (repeatable)")
    p.add_argument("--heldout", default=None, help="comma-separated sequences never trained on (default: the validation five)")
    p.add_argument("--synthetic", type=int, default=30, help="number of synthetic sequences added")
    p.add_argument("--out", default=None, help="output folder: cache, checkpoints, log, final weights (default runs/FAMILY)")
    p.add_argument("--input-size", type=_size, default=None,
                   help="training resolution HxW, multiple of 32 (default 256x448 gfrtm, 128x224 slowfast)")
    p.add_argument("--backbone", default="mobilenetv2", choices=["mobilenetv2", "resnet18"])
    p.add_argument("--backbone-weights", default=None, help="torchvision ImageNet state dict for the backbone")
    p.add_argument("--refiner-stride", type=int, default=8, choices=[8, 16],
                   help="gfrtm: stride at which the refine-translator works (16: as Reuse_VOS, 4x cheaper)")
    p.add_argument("--reuse-scale", type=int, default=1, choices=[1, 2],
                   help="gfrtm: 2 runs the gate and the reuse path on a half-resolution encoding (needs --refiner-stride 16)")
    p.add_argument("--reuse-head", default="stride8", choices=["stride8", "residual", "blend"],
                   help="gfrtm (--reuse-scale 2): the reused frame's head: stride-8 logits, a correction of the "
                        "last computed frame's logits, or a learned blend of both")
    p.add_argument("--proj-dim", type=int, default=32,
                   help="gfrtm: channels of the online target model's projection (FRTM: 96)")
    p.add_argument("--target-inputs", default="f16", choices=["f16", "f16+f32"],
                   help="gfrtm: encoder outputs the target model reads at stride 16 (f32 upsampled)")
    p.add_argument("--init-reuse-path", action="store_true",
                   help="gfrtm: also take --init's reuse path (matcher, gate, delta, translator) to continue phase 2")
    p.add_argument("--init", default=None,
                   help="start from this checkpoint (gfrtm: its segmentation network, e.g. with --phases 2; "
                        "slowfast: every layer, widened where the new model reads more inputs)")
    p.add_argument("--phase1-steps", type=int, default=3000)
    p.add_argument("--phase2-steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=None, help="samples per step (default 4 gfrtm, 2 slowfast)")
    p.add_argument("--lr1", type=float, default=1e-3, help="phase 1 learning rate")
    p.add_argument("--lr2", type=float, default=5e-4, help="phase 2 learning rate (paper: 5e-4)")
    p.add_argument("--m1", type=float, default=1.0)
    p.add_argument("--m2", type=float, default=0.0)
    p.add_argument("--ep-T", type=int, default=120, help="epoch at which the margin m reaches m1")
    p.add_argument("--epoch-samples", type=int, default=400, help="samples per epoch for the margin schedule")
    p.add_argument("--phases", default="1,2", help="phases to run")
    p.add_argument("--max-gap", type=int, default=25, help="gfrtm phase 2: largest gap n between the previous and current frame")
    p.add_argument("--real-share", type=float, default=0.8, help="gfrtm: share of samples from real (DAVIS) sequences")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=0, help="frames per sequence (0 = all)")
    sf = p.add_argument_group("slowfast")
    sf.add_argument("--preset", default="3-7", help="pathway preset: 1-1, 3-3, 7-7, 1-7, 3-7 (slow - fast frames)")
    sf.add_argument("--mode", default="semi", choices=["semi", "unsupervised"])
    sf.add_argument("--freeze", default="backbone", choices=["none", "backbone", "slowfast"],
                    help="backbone: slow pathway's ImageNet 2D layers; slowfast: the whole encoder (features cached)")
    sf.add_argument("--steps", type=int, default=2000)
    sf.add_argument("--clip-len", type=int, default=4, help="supervised frames per streamed training segment")
    sf.add_argument("--lr", type=float, default=1e-3, help="learning rate (project recipe: 0.001)")
    sf.add_argument("--random-scale", type=float, default=None, help="random scale augmentation (default 0.25; 0.4 for 1-1)")
    sf.add_argument("--fast-gray", action="store_true", help="grayscale input to the fast pathway")
    sf.add_argument("--target-model", action="store_true",
                    help="semi-supervised: the decoder also reads an online target model's score (FRTM's)")
    sf.add_argument("--corrupt-prev", type=float, default=0.5,
                    help="probability that a training segment starts from a corrupted previous mask")


def main(args) -> int:
    if args.family == "slowfast":
        from edgevos.train.slowfast import Trainer

        path = Trainer(slowfast_config(args)).run()
    else:
        from edgevos.train.gfrtm import Trainer

        path = Trainer(gfrtm_config(args)).run(phases=tuple(int(p) for p in args.phases.split(",")))
    print(f"trained weights: {path}")
    return 0


def gfrtm_config(args):
    """The gfrtm TrainConfig for parsed ``edgevos train gfrtm`` arguments."""
    from edgevos.train.config import HELDOUT
    from edgevos.train.gfrtm import TrainConfig

    heldout = tuple(s for s in args.heldout.split(",") if s) if args.heldout is not None else HELDOUT
    args.out = args.out or "runs/gfrtm"
    args.input_size = args.input_size or (256, 448)
    args.batch = args.batch or 4
    cfg = TrainConfig(out=args.out, davis=tuple(args.davis), heldout=heldout, synthetic=args.synthetic,
                      input_size=args.input_size, backbone=args.backbone, backbone_weights=args.backbone_weights,
                      phase1_steps=args.phase1_steps, phase2_steps=args.phase2_steps, batch=args.batch,
                      lr1=args.lr1, lr2=args.lr2, m1=args.m1, m2=args.m2, ep_T=args.ep_T,
                      epoch_samples=args.epoch_samples, threads=args.threads, seed=args.seed,
                      max_frames_per_sequence=args.max_frames, refiner_stride=args.refiner_stride, init=args.init,
                      max_gap=args.max_gap, real_share=args.real_share, reuse_scale=args.reuse_scale,
                      reuse_head=args.reuse_head, init_reuse_path=args.init_reuse_path, proj_dim=args.proj_dim,
                      target_inputs=tuple(args.target_inputs.split("+")))
    return cfg


def slowfast_config(args):
    """The slowfast TrainConfig for parsed ``edgevos train slowfast`` arguments."""
    from edgevos.programs.slowfast import check_preset

    check_preset(args.preset)  # a wrong name fails before torch loads
    from edgevos.train.config import HELDOUT
    from edgevos.train.slowfast import TrainConfig

    heldout = tuple(s for s in args.heldout.split(",") if s) if args.heldout is not None else HELDOUT
    cfg = TrainConfig(out=args.out or f"runs/slowfast-{args.preset}", davis=tuple(args.davis), heldout=heldout,
                      synthetic=args.synthetic, input_size=args.input_size or (128, 224), preset=args.preset,
                      backbone=args.backbone, backbone_weights=args.backbone_weights, mode=args.mode,
                      freeze=args.freeze, fast_gray=args.fast_gray, steps=args.steps, batch=args.batch or 2,
                      clip_len=args.clip_len, lr=args.lr, random_scale=args.random_scale, m1=args.m1, m2=args.m2,
                      ep_T=args.ep_T, epoch_samples=args.epoch_samples, threads=args.threads, seed=args.seed,
                      max_frames_per_sequence=args.max_frames, target_model=args.target_model,
                      corrupt_prev=args.corrupt_prev, init=args.init)
    return cfg
