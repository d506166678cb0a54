"""The ``edgevos`` command line.

Each verb lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; modules must import cheaply (no torch at import time).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from edgevos import __version__
from edgevos.errors import EdgevosError

# verb -> (module, one-line help)
COMMANDS = {
    "doctor": ("edgevos.doctor", "report versions, CPU features, GPU and Jetson state"),
    "eval": ("edgevos.eval_cli", "DAVIS J&F of saved masks, or of a model on a DAVIS folder"),
    "train": ("edgevos.train.cli", "train a model family on DAVIS-layout folders + synthetic data"),
    "export": ("edgevos.export_cli", "export a model to a bundle: per-stage ONNX, INT8, parity report"),
    "build": ("edgevos.build_cli", "build TensorRT engines for a bundle (Jetson / GPU)"),
    "run": ("edgevos.run_cli", "segment a source URI and write sinks (video, masks)"),
    "bench": ("edgevos.bench", "benchmark matrix: family x backend x precision x tau"),
    "demo": ("edgevos.demo", "the quick-start job on embedded defaults"),
    "import-weights": ("edgevos.import_weights", "import an FRTM / Reuse_VOS ResNet18 checkpoint as an edgevos checkpoint"),
}


def _verb_parsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Parse ``argv``; a verb whose module sets ``INTERMIXED = True`` takes its positionals
    before, between and after options (``edgevos run SRC --bundle B SINK``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    verb = getattr(args, "command", None)
    sub = _verb_parsers(parser).get(verb)
    if extra and sub is not None and getattr(sub, "intermixed", False):
        return sub.parse_intermixed_args(argv[argv.index(verb) + 1:], namespace=argparse.Namespace(command=verb))
    if extra:
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevos",
        description="Semi-supervised video object segmentation on NVIDIA Jetson.",
    )
    parser.add_argument("--version", action="version", version=f"edgevos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # verb not available in this build
        p = sub.add_parser(verb, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_handler=module.main)
        p.intermixed = getattr(module, "INTERMIXED", False)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 2
    try:
        return int(args._handler(args) or 0)
    except EdgevosError as exc:
        print(f"edgevos {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"edgevos {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
