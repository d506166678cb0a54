"""``edgevos import-weights``: an FRTM / Reuse_VOS ResNet18 checkpoint -> an edgevos checkpoint.

    edgevos import-weights rn18_all.pth --backbone-weights resnet18-f37072fd.pth --out frtm_rn18.pt
    edgevos eval --family gfrtm --weights frtm_rn18.pt --tau 1 ...
    edgevos export --family gfrtm --weights frtm_rn18.pt --out bundles/frtm

The mapping is documented in docs/upstream_weights.md (:mod:`edgevos.models.upstream`).
"""
from __future__ import annotations

import json

from edgevos.backbone_weights import backbone_weights_arg
from edgevos.errors import InputError


def add_arguments(p) -> None:
    p.add_argument("src", help="upstream checkpoint (.pth): andr345/frtm-vos or HYOJINPARK/Reuse_VOS, ResNet18")
    p.add_argument("--out", required=True, help="edgevos checkpoint to write (.pt)")
    p.add_argument("--kind", default="auto", choices=("auto", "frtm", "reuse_vos"),
                   help="upstream layout (default: detected from the keys)")
    p.add_argument("--backbone-weights", type=backbone_weights_arg, help="torchvision ResNet18 ImageNet state dict (resnet18-f37072fd.pth); "
                                              "both upstream models use it and neither file contains it")
    p.add_argument("--no-backbone", action="store_true",
                   help="write the checkpoint with a random backbone (inspection / tests only)")
    p.add_argument("--half", action="store_true", help="store floating-point tensors as fp16 (half the size)")
    p.add_argument("--json", action="store_true", help="print the import report as JSON")


def main(args) -> int:
    if not args.backbone_weights and not args.no_backbone:
        raise InputError(
            "no --backbone-weights given: FRTM / Reuse_VOS checkpoints do not contain the ResNet18 backbone; pass "
            "the torchvision ImageNet weights (resnet18-f37072fd.pth), or --no-backbone for a random one"
        )
    from pathlib import Path

    import torch

    from edgevos.files import replacing
    from edgevos.parsing import check_writable

    check_writable(args.out, "--out")  # before the import, not after it

    from edgevos.models.upstream import format_report, import_upstream

    ckpt, report = import_upstream(args.src, kind=args.kind, backbone_weights=args.backbone_weights)
    if args.half:
        ckpt["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    out = Path(args.out)
    with replacing(out) as tmp:
        torch.save(ckpt, tmp)
    report = dict(report, out=str(out))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        print(f"wrote         {out}  (build_gfrtm(weights=...), edgevos eval/export --weights {out})")
    return 0
