"""The ``edgevos`` command line.

Each verb lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; modules must import cheaply (no torch at import time).
Every verb takes ``-v`` (debug messages) and ``-q`` (warnings and errors only, no
progress), before the verb or after it: they set the level of the ``edgevos`` logger,
whose messages go to stderr; results go to stdout.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from edgevos import __version__
from edgevos.console_log import log_level, start_console_log, stop_console_log
from edgevos.errors import EdgevosError

# verb -> (module, one-line help)
COMMANDS = {
    "doctor": ("edgevos.doctor", "report versions, CPU features, GPU and Jetson state"),
    "check": ("edgevos.jetson.check", "on a Jetson: build a bundle's TensorRT engines, compare them with ONNX Runtime, "
                                      "time them, measure power; one table and a JSON report (jetson/check.sh)"),
    "eval": ("edgevos.eval_cli", "DAVIS J&F of saved masks, or of a model on a DAVIS folder"),
    "train": ("edgevos.train.cli", "train a model family on DAVIS-layout folders + synthetic data"),
    "export": ("edgevos.export_cli", "export a model to a bundle: per-stage ONNX, INT8, parity report"),
    "build": ("edgevos.build_cli", "build TensorRT engines for a bundle (Jetson / GPU)"),
    "run": ("edgevos.run_cli", "segment a source URI and write sinks (video, masks)"),
    "bench": ("edgevos.bench", "benchmark matrix: family x backend x precision x tau"),
    "demo": ("edgevos.demo", "the quick-start job on embedded defaults"),
    "import-weights": ("edgevos.import_weights", "import an FRTM / Reuse_VOS ResNet18 checkpoint as an edgevos checkpoint"),
}


def _add_log_options(parser: argparse.ArgumentParser, root: bool) -> None:
    """``-v``/``-q``; on a verb they default to SUPPRESS so that the root's values stand,
    and ``-q`` joins a verb's own ``--quiet`` (no progress) where it has one."""
    default = dict(verbose=0, quiet=False) if root else dict(verbose=argparse.SUPPRESS, quiet=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="count", dest="verbose", default=default["verbose"],
                        help="debug messages")
    own = parser._option_string_actions.get("--quiet")
    if own is not None:
        own.default = argparse.SUPPRESS
    names = [n for n in ("-q", "--quiet") if n not in parser._option_string_actions]
    parser.add_argument(*names, action="store_true", dest="quiet", default=default["quiet"],
                        help="warnings and errors only, no progress")


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
        root = argparse.Namespace(command=verb, verbose=args.verbose, quiet=args.quiet)
        return sub.parse_intermixed_args(argv[argv.index(verb) + 1:], namespace=root)
    if extra:
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevos",
        description="Semi-supervised video object segmentation on NVIDIA Jetson.",
    )
    parser.add_argument("--version", action="version", version=f"edgevos {__version__}")
    _add_log_options(parser, root=True)
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
        _add_log_options(p, root=False)
        p.set_defaults(_handler=module.main)
        p.intermixed = getattr(module, "INTERMIXED", False)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 2
    handler = start_console_log(log_level(args.verbose or 0, bool(args.quiet)))
    try:
        return int(args._handler(args) or 0)
    except EdgevosError as exc:
        print(f"edgevos {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"edgevos {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        stop_console_log(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
