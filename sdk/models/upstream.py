"""Import the published FRTM and Reuse_VOS ResNet18 checkpoints onto G-FRTM-fast.

Two upstream layouts are known (both ResNet18, both saved as ``{"model": state_dict, ...}``
by their training loops; the backbone is torchvision's ImageNet ResNet18 and is not
in either file):

* ``frtm`` (andr345/frtm-vos, e.g. ``rn18_all.pth``): the segmentation network only,
  keys ``refiner.*`` (140 tensors).
* ``reuse_vos`` (HYOJINPARK/Reuse_VOS, e.g. ``DAVIS_RN18_*.pth``): the same refiner plus
  its translator (``refiner.Diff_process.*``), the gate head (``convGS.*``), the delta
  generator (``Convert_Diff.*``) and template matching (``Tmatching.*``) (189 tensors).

They map onto :class:`edgevos.models.gfrtm.GFRTM` built with ``decoder="frtm"``
(:data:`edgevos.models.gfrtm.FRTM_PRESET`), whose blocks have the upstream structure.
The target model (``project`` 1x1 + ``filter`` 3x3) is fitted online per sequence in
FRTM, so it is in neither file and nothing maps to it: edgevos fits it on the host at
run time with K = 96 (``proj_dim``), as FRTM.  The name/shape table is
:func:`mapping`; docs/upstream_weights.md prints it.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Dict, List, Mapping, Tuple, Union

from edgevos.errors import InputError

KINDS = ("frtm", "reuse_vos")

#: FRTM's refinement levels (its ``layerN`` names count the stem as layer1) -> edgevos level
LEVELS = (("layer5", 512, "level32"), ("layer4", 256, "level16"), ("layer3", 128, "level8"), ("layer2", 64, "level4"))
DIM = 64  # refiner channels of the published models (FRTM "nchannels")
TMAT = 64  # Reuse_VOS template key / value / output channels
TRANSLATOR_MID = 48  # Reuse_VOS translator branch width (16 * 3)

Row = Tuple[str, str, Tuple[int, ...]]  # (upstream key, edgevos key, shape)


def _conv(up: str, ev: str, cout: int, cin: int, k: int, bias: bool = True) -> List[Row]:
    rows = [(up + "weight", ev + "weight", (cout, cin, k, k))]
    return rows + ([(up + "bias", ev + "bias", (cout,))] if bias else [])


def _bn(up: str, ev: str, n: int) -> List[Row]:
    rows = [(up + p, ev + p, (n,)) for p in ("weight", "bias", "running_mean", "running_var")]
    return rows + [(up + "num_batches_tracked", ev + "num_batches_tracked", ())]


def _rrb(up: str, ev: str, d: int = DIM) -> List[Row]:
    """FRTM RRB with BatchNorm: conv1x1, bblock = conv3x3, BN, ReLU, conv3x3 (no bias)."""
    return (_conv(up + "conv1x1.", ev + "conv1x1.", d, d, 1) + _conv(up + "bblock.0.", ev + "residual.0.", d, d, 3)
            + _bn(up + "bblock.1.", ev + "residual.1.", d)
            + _conv(up + "bblock.3.", ev + "residual.3.", d, d, 3, bias=False))


def _refiner() -> List[Row]:
    rows: List[Row] = []
    n = DIM + 1  # TSE works on [reduced features, score]
    for name, c, level in LEVELS:
        up, ev = f"refiner.TSE.{name}.", f"{level}.tse."
        rows += _conv(up + "reduce.0.", ev + "reduce.0.", DIM, c, 1) + _conv(up + "reduce.2.", ev + "reduce.2.", DIM, DIM, 1)
        rows += (_conv(up + "transform.0.", ev + "transform.0.", n, n, 3)
                 + _conv(up + "transform.2.", ev + "transform.2.", n, n, 3)
                 + _conv(up + "transform.4.", ev + "transform.4.", DIM, n, 3))
        rows += _rrb(f"refiner.RRB1.{name}.", f"{level}.rrb1.")
        rows += (_conv(f"refiner.CAB.{name}.convreluconv.0.", f"{level}.cab.attention.0.", DIM, 2 * DIM, 1)
                 + _conv(f"refiner.CAB.{name}.convreluconv.2.", f"{level}.cab.attention.2.", DIM, DIM, 1))
        rows += _rrb(f"refiner.RRB2.{name}.", f"{level}.rrb2.")
    rows += _conv("refiner.project.conv1.", "predict.conv1.", DIM // 2, DIM, 3)
    rows += _conv("refiner.project.conv2.", "predict.conv2.", 1, DIM // 2, 3)
    return rows


def _reuse_parts() -> List[Row]:
    rows: List[Row] = []
    up = "refiner.Diff_process."
    for i in (1, 2, 3):
        rows += _conv(f"{up}conv_multi.conv{i}.", f"translator.branches.{i - 1}.", TRANSLATOR_MID, DIM + 1, 3)
    rows += _conv(up + "conv_multi.convBlend.", "translator.merge.", DIM, 3 * TRANSLATOR_MID, 5)
    rows += _rrb(up + "postRBB.", "translator.res.")
    rows += _conv("convGS.1.", "gate.conv1.", 16, TMAT, 3) + _bn("convGS.2.", "gate.bn1.", 16)
    rows += _conv("convGS.4.", "gate.conv2.", 2, 16, 3)
    rows += _conv("Convert_Diff.", "delta.conv.", 1, TMAT, 3)
    cin = 128 + 1  # stride-8 features ++ mask / previous score
    g = 4  # channels per group of the 5x5 grouped convs
    for up_name, ev_name in (("conv_key", "template_key"), ("conv_val", "template_value")):
        up, ev = f"Tmatching.Tgenerate.{up_name}.", f"matcher.{ev_name}."
        rows += _conv(up + "0.", ev + "0.", TMAT, cin, 1) + _conv(up + "2.", ev + "2.", TMAT, g, 5)
    for up_name, ev_name in (("conv_key", "query_key"), ("conv_feat", "query_feat")):
        up, ev = f"Tmatching.Tmatching.{up_name}.", f"matcher.{ev_name}."
        rows += _conv(up + "0.", ev + "0.", TMAT, cin, 1) + _conv(up + "1.", ev + "1.", TMAT, g, 5)
    rows += _conv("Tmatching.Tmatching.blend.0.", "matcher.blend.0.", 2 * TMAT, g, 5)
    rows += _conv("Tmatching.Tmatching.blend.1.", "matcher.blend.1.", TMAT, 2 * TMAT, 1)
    return rows


def mapping(kind: str) -> List[Row]:
    """The upstream layout of ``kind``: rows (upstream key, edgevos key, shape), upstream order."""
    if kind == "frtm":
        return _refiner()
    if kind == "reuse_vos":
        return _refiner() + _reuse_parts()
    raise InputError(f"unknown upstream kind '{kind}': choose one of {list(KINDS)} or 'auto'")


#: edgevos modules each layout leaves at their random initialisation (besides the backbone)
REINITIALISED = {
    "frtm": ("matcher", "gate", "delta", "translator"),
    "reuse_vos": (),
}
_OPTIONAL_SUFFIX = "num_batches_tracked"  # absent from files saved before PyTorch 0.4.1


# ----------------------------------------------------------------------------- loading
def _safe_load(path: Path):
    """``torch.load(weights_only=True)``; the training loops also pickle their statistics
    (``defaultdict(lib.utils.AverageMeter)``): those two names load as inert empty values,
    nothing else outside tensors and plain containers is accepted."""
    from edgevos.models.weights import safe_load

    class _Discarded:  # stands for a training-statistics object; its state is dropped
        def __setstate__(self, state):
            pass

    def _empty_dict(*_args):
        return collections.OrderedDict()

    allowed = [(_Discarded, "lib.utils.AverageMeter"), (_empty_dict, "collections.defaultdict")]
    return safe_load(path, "upstream checkpoint",
                     "Save its state dict alone from a trusted copy (torch.save(ckpt['model'], 'state.pth')) "
                     "and import that", safe_globals=allowed)


def _unwrap(obj, source: str) -> Dict[str, "object"]:
    """The state dict inside a checkpoint: top-level 'model' / 'state_dict' / 'net' (nested once
    more at most), 'module.' (DataParallel) prefixes removed, a bare refiner given its 'refiner.'."""
    import torch

    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        if obj and all(torch.is_tensor(v) for v in obj.values()):
            break
        inner = next((obj[k] for k in ("model", "state_dict", "net") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise InputError(
            f"{source} holds no state dict of tensors (top level: {keys}): pass an FRTM or Reuse_VOS "
            f"checkpoint (a dict with 'model' -> state dict) or the state dict itself"
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("TSE.") for k in state) and not any(k.startswith("refiner.") for k in state):
        state = {("refiner." + k if k.split(".")[0] in ("TSE", "RRB1", "CAB", "RRB2", "project", "Diff_process")
                  else k): v for k, v in state.items()}
    return state


def detect_kind(state: Mapping[str, object], source: str = "the checkpoint") -> str:
    keys = list(state)
    if not any(k.startswith("refiner.TSE.") for k in keys):
        raise InputError(
            f"{source} is not an FRTM / Reuse_VOS checkpoint: no 'refiner.TSE.*' keys (first keys: {keys[:6]}). "
            f"Pass the .pth released by andr345/frtm-vos or HYOJINPARK/Reuse_VOS, or its 'model' state dict"
        )
    reuse = ("refiner.Diff_process.", "convGS.", "Convert_Diff.", "Tmatching.")
    return "reuse_vos" if any(k.startswith(reuse) for k in keys) else "frtm"


def _validate(state: Mapping[str, object], kind: str, source: str) -> List[Row]:
    rows = mapping(kind)
    expected = {up: shape for up, _, shape in rows}
    w = state.get("refiner.TSE.layer4.reduce.0.weight")
    if w is not None and w.dim() == 4 and w.shape[1] != 256:
        raise InputError(
            f"{source}: 'refiner.TSE.layer4.reduce.0.weight' takes {w.shape[1]} input channels, not 256: "
            f"this is not a ResNet18 model (1024 = ResNet101). Only the ResNet18 checkpoints map onto edgevos"
        )
    unknown = [k for k in state if k not in expected]
    if unknown:
        raise InputError(
            f"{source} has keys the {kind} ResNet18 layout does not have: {unknown[:6]}"
            f"{' ...' if len(unknown) > 6 else ''} ({len(unknown)} in all). Unknown layout: pass an unmodified "
            f"FRTM / Reuse_VOS ResNet18 checkpoint, or --kind to force the other layout"
        )
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    if missing:
        raise InputError(
            f"{source} lacks {len(missing)} keys of the {kind} ResNet18 layout, e.g. {missing[:4]}: "
            f"the file is truncated or of another model; pass the complete checkpoint"
        )
    for key, value in state.items():
        found, want = tuple(value.shape), expected[key]
        if found != want:
            raise InputError(
                f"{source}: key '{key}' has shape {found} but the {kind} ResNet18 layout needs {want}: "
                f"the file is of another model variant (other backbone or channel widths); "
                f"only the published ResNet18 models (64 refiner channels) map onto edgevos"
            )
    return rows


# ----------------------------------------------------------------------------- import
def import_upstream(path_or_state_dict: Union[str, Path, Mapping], kind: str = "auto", backbone_weights=None,
                    input_size=(480, 864), seed: int = 0):
    """Map an upstream ResNet18 checkpoint onto G-FRTM-fast (``decoder="frtm"``).

    Returns ``(checkpoint, report)``: ``checkpoint`` is an edgevos checkpoint dict
    (``family``, ``config``, ``state_dict``, ``meta``; save it with ``torch.save`` and load it
    with ``build_gfrtm(weights=path)``); ``report`` says what was loaded, what is at its
    (seeded) random initialisation and why.  ``backbone_weights`` is a torchvision
    ResNet18 ImageNet state dict (``resnet18-f37072fd.pth``), the backbone both upstream
    models were trained on; without it the backbone is random and the report says so.
    """
    import dataclasses

    import torch

    from edgevos.models.backbones import load_torchvision_weights
    from edgevos.models.gfrtm import FRTM_PRESET, GfrtmConfig, GFRTM, freeze

    if kind not in ("auto",) + KINDS:
        raise InputError(f"unknown upstream kind '{kind}': choose 'auto' or one of {list(KINDS)}")
    if isinstance(path_or_state_dict, Mapping):
        source, raw = "the state dict", path_or_state_dict
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise InputError(f"upstream checkpoint '{path}' not found: pass the .pth file of FRTM or Reuse_VOS")
        source, raw = f"'{path}'", _safe_load(path)
    state = _unwrap(raw, source)
    found_kind = detect_kind(state, source)
    kind = found_kind if kind == "auto" else kind
    rows = _validate(state, kind, source)

    cfg = GfrtmConfig(input_size=tuple(int(v) for v in input_size), **FRTM_PRESET)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GFRTM(cfg)
    if backbone_weights is not None:
        load_torchvision_weights(model.backbone, backbone_weights)
    freeze(model.backbone)
    target = model.state_dict()
    loaded = []
    for up, ev, shape in rows:
        if up not in state:
            continue  # an optional BN counter
        if tuple(target[ev].shape) != shape:  # the table and the model disagree: a bug, not a user error
            raise RuntimeError(f"mapping row {up} -> {ev}: model has {tuple(target[ev].shape)}, table {shape}")
        target[ev] = state[up].detach().to(dtype=target[ev].dtype).clone()
        loaded.append(ev)
    model.load_state_dict(target, strict=True)

    reinit = list(REINITIALISED[kind])
    loaded_set = set(loaded)
    decoder_keys = [k for k in target if not k.startswith("backbone.")]
    counters = [k for k in decoder_keys if k not in loaded_set and k.endswith(_OPTIONAL_SUFFIX)
                and not k.startswith(tuple(m + "." for m in reinit))]
    report = {
        "source": source,
        "kind": kind,
        "detected_kind": found_kind,
        "mapped_tensors": len(loaded),
        "mapped_parameters": int(sum(state[up].numel() for up, _, _ in rows if up in state)),
        "loaded_modules": sorted({k.split(".")[0] for k in loaded}),
        "reinitialised_modules": reinit,
        "missing_bn_counters": counters,
        "backbone": ("torchvision ImageNet ResNet18 from " + str(backbone_weights)) if backbone_weights is not None
        else "NOT LOADED (random): pass the torchvision ResNet18 ImageNet weights (resnet18-f37072fd.pth)",
        "backbone_loaded": backbone_weights is not None,
        "target_model": "not in the checkpoint (FRTM fits it online per sequence); edgevos fits it on the host "
                        "at run time with K = 96",
        "notes": _notes(kind),
    }
    ckpt = {
        "family": "gfrtm",
        "config": dataclasses.asdict(cfg),
        "state_dict": model.state_dict(),
        "meta": {"imported_from": report["source"], "upstream_kind": kind, "report": report},
    }
    return ckpt, report


def _notes(kind: str) -> List[str]:
    notes = []
    if kind == "frtm":
        notes.append("matcher, gate, delta and translator are not in an FRTM checkpoint: they stay at a seeded "
                     "random initialisation; run with tau = 1 (plain FRTM-fast) or train them "
                     "(edgevos train gfrtm, phase 2)")
    else:
        notes.append("the gate's AdaptiveMaxPool2d(7)/(3) run as fixed slices at the stage's size: same function")
        notes.append("'embed' of gate_template/gate is a (1, 1) carrier with no upstream counterpart "
                     "(the upstream matcher uses no previous-frame embedding)")
    notes.append("logits come out at the input size (FRTM's bicubic head); r8 is the stride-16 refiner state")
    return notes


def format_report(report: dict) -> str:
    lines = [
        f"source        {report['source']}",
        f"layout        {report['kind']}" + ("" if report["kind"] == report["detected_kind"]
                                            else f" (forced; detected {report['detected_kind']})"),
        f"mapped        {report['mapped_tensors']} tensors, {report['mapped_parameters']:,} values",
        f"loaded        {', '.join(report['loaded_modules'])}",
        f"random init   {', '.join(report['reinitialised_modules']) or 'none'}",
        f"backbone      {report['backbone']}",
        f"target model  {report['target_model']}",
    ]
    if report["missing_bn_counters"]:
        lines.append(f"BN counters   {len(report['missing_bn_counters'])} absent in the file (left at 0)")
    lines += [f"note          {n}" for n in report["notes"]]
    return "\n".join(lines)


def mapping_markdown(kind: str = "reuse_vos") -> str:
    """The mapping as a markdown table (docs/upstream_weights.md)."""
    out = ["| upstream key | edgevos key | shape |", "|---|---|---|"]
    for up, ev, shape in mapping(kind):
        out.append(f"| `{up}` | `{ev}` | {tuple(shape)} |")
    return "\n".join(out)
