"""The ``edgevos`` command line.

Each verb lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; modules must import cheaply (no torch at import time).
Every verb takes ``-v`` (debug messages) and ``-q`` (warnings and errors only, no
progress), before the verb or after it: they set the level of the ``edgevos`` logger,
whose messages go to stderr; results go to stdout.

Exit codes (every verb): 0 done; 1 an error edgevos names (a wrong value found while
working, a missing or unreadable file, a file-system error such as a read-only or full
disk); 2 a command line argparse refuses (unknown option, missing argument, a number out
of range); ``edgevos run`` also 129 / 130 / 143 when SIGHUP / Ctrl-C / SIGTERM stopped it
with its outputs finalized.  No wrong input ends in a Python traceback; ``-v`` adds the
traceback of a file-system error to the message.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from edgevos import __version__
from edgevos.console_log import log_level, start_console_log, stop_console_log
from edgevos.errors import EdgevosError
from edgevos.parsing import number, threads_arg

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


#: exit codes of every verb (README "Exit codes")
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _phases(text: str) -> str:
    """``edgevos train --phases``: a comma list of 1 and 2."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items or any(t not in ("1", "2") for t in items):
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma list of training phases 1 and 2 (e.g. 1,2 or 2)")
    return text


#: numbers of verbs whose modules declare plain int/float types, range-checked here at parse
#: time (exit 2) like every other verb's numbers
CHECKED_OPTIONS = {
    "bench": {"--threads": threads_arg(), "--max-reuse": number(int, 0)},
    "train": {
        "--threads": threads_arg(), "--batch": number(int, 1), "--synthetic": number(int, 0),
        "--phase1-steps": number(int, 0), "--phase2-steps": number(int, 0), "--steps": number(int, 0),
        "--clip-len": number(int, 1), "--max-gap": number(int, 1), "--epoch-samples": number(int, 1),
        "--ep-T": number(int, 1), "--max-frames": number(int, 0), "--seed": number(int, 0),
        "--lr1": number(float, 0.0, low_open=True), "--lr2": number(float, 0.0, low_open=True),
        "--lr": number(float, 0.0, low_open=True), "--m1": number(float), "--m2": number(float),
        "--real-share": number(float, 0.0, 1.0), "--runtime-share": number(float, 0.0, 1.0),
        "--score-noise": number(float, 0.0, 1.0), "--gate-drop-scale": number(float, 0.0, low_open=True),
        "--proj-dim": number(int, 1), "--warp-radius": number(int, 1, 6),
        "--composites": number(int, 0), "--corrupt-prev": number(float, 0.0, 1.0),
        "--random-scale": number(float, 0.0), "--phases": _phases,
    },
}


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as the logger prints one: no source line under it (it reads like a traceback)."""
    return f"warning: {message}\n"


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
        for option, kind in CHECKED_OPTIONS.get(verb, {}).items():
            action = p._option_string_actions.get(option)
            if action is not None:
                action.type = kind
        p.set_defaults(_handler=module.main)
        p.intermixed = getattr(module, "INTERMIXED", False)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if not getattr(args, "_handler", None):
        parser.print_help()
        return EXIT_USAGE
    handler = start_console_log(log_level(args.verbose or 0, bool(args.quiet)))
    format_warning, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return int(args._handler(args) or 0)
    except EdgevosError as exc:
        print(f"edgevos {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # the file system refused: a read-only, full or missing location
        logging.getLogger("edgevos").debug("the file-system error came from here:", exc_info=True)
        where = f": '{exc.filename}'" if exc.filename else ""
        print(f"edgevos {args.command}: error: {exc.strerror or exc}{where} (check the path, that its folders "
              "exist and can be written, and the free space)", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"edgevos {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = format_warning
        stop_console_log(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
