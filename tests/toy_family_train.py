"""A toy model family, file 3 of 3: its training, ``edgevos train toy`` (see ``toy_family_model.py``).

The family registry entry names :data:`TRAINING`: the family's own options, its TrainConfig
from parsed arguments, and the trainer (BCE of the next frame's mask on synthetic sequences).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Tuple

import numpy as np

from edgevos.train.config import BaseTrainConfig, parse_heldout
from edgevos.train.family import FamilyTraining


@dataclass
class TrainConfig(BaseTrainConfig):
    out: str = "runs/toy"
    input_size: Tuple[int, int] = (64, 96)
    width: int = 4
    steps: int = 20
    lr: float = 1e-2


def add_arguments(g) -> None:
    g.add_argument("--toy-width", type=int, default=4, help="channels of the toy network")
    g.add_argument("--toy-steps", type=int, default=20, help="training steps")


def config_from_args(args) -> TrainConfig:
    return TrainConfig(out=args.out or "runs/toy", davis=tuple(args.davis), heldout=parse_heldout(args.heldout),
                       synthetic=args.synthetic, input_size=args.input_size or (64, 96), seed=args.seed,
                       threads=args.threads, width=args.toy_width, steps=args.toy_steps)


def train(cfg: TrainConfig, args=None) -> Path:
    import torch

    from edgevos.data import SyntheticConfig, make_sequence
    from edgevos.models.weights import save_checkpoint
    from toy_family_model import build_toynet

    torch.manual_seed(cfg.seed)
    h, w = cfg.input_size
    model = build_toynet(input_size=cfg.input_size, width=cfg.width).train()
    seqs = [make_sequence(SyntheticConfig(height=h, width=w, num_frames=cfg.synthetic_frames, num_objects=1,
                                          seed=1000 + i)) for i in range(cfg.synthetic)]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def pooled(mask):  # (1, 1, H/4, W/4) foreground share
        m = torch.from_numpy((mask > 0).astype(np.float32))[None, None]
        return torch.nn.functional.avg_pool2d(m, 4)

    losses = []
    for step in range(cfg.steps):
        seq = seqs[step % len(seqs)]
        t = 1 + step % (len(seq) - 1)
        image = torch.from_numpy(np.ascontiguousarray(seq.frame(t).transpose(2, 0, 1))[None].astype(np.float32))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(image, pooled(seq.mask(t - 1))),
                                                                    pooled(seq.mask(t)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out / "toy_final.pt", "toy", model.eval(),
                           meta={"train_config": asdict(cfg), "losses": losses})


TRAINING = FamilyTraining(add_arguments, config_from_args, train,
                          "defaults: --input-size 64x96, --out runs/toy; no --init")
