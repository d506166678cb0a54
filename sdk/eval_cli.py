"""``edgevos eval``: DAVIS J&F of saved masks, or of a model (the argument layer over :func:`edgevos.evaluate`).

    edgevos eval --results RESULTS --davis DAVIS [--sequences a,b] [--out DIR]

reads ``RESULTS/<sequence>/<frame>.png``, scores frames 1..T-2 of every
sequence against ``DAVIS/Annotations/480p``, prints a table and writes
``global_results.csv``, ``per-object_results.csv`` and ``results.json`` into
``--out`` (default: the results folder).

Layout of this module: ``add_arguments`` registers the shared arguments, the
results-folder arguments (``add_results_arguments``) and the model-evaluation
arguments (``add_model_arguments``); ``main`` dispatches to ``main_results``
(masks on disk) or ``main_model`` (run a model family, when ``--family`` is
given).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edgevos.backend import BACKENDS
from edgevos.errors import InputError
from edgevos.parsing import check_writable, number, parse_taus, threads_arg

log = logging.getLogger(__name__)


def add_results_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("saved masks")
    g.add_argument("--results", metavar="DIR", help="folder of predicted masks: DIR/<sequence>/<frame>.png")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the model-evaluation mode (``--family ...``).

    Model evaluation runs a model family over the DAVIS sequences instead of
    reading saved masks; its arguments and ``main_model`` live here so that
    ``main`` can dispatch on ``args.family``.
    """
    g = parser.add_argument_group("model evaluation")
    g.add_argument("--family", default=None, help="run this model family over --davis (e.g. gfrtm)")
    g.add_argument("--weights", default="default", help="shipped weights name or checkpoint path (torch backend)")
    g.add_argument("--bundle", default=None, help="evaluate an exported bundle instead of PyTorch weights")
    g.add_argument("--backend", default=None, choices=list(BACKENDS),
                   help="default: torch for --weights, onnxruntime for --bundle")
    g.add_argument("--precision", default=None, help="bundle precision (fp32, int8-cpu, int8-trt, ...)")
    g.add_argument("--tau", default="1", help="reuse-gate threshold(s), comma-separated: 1,0.9,0.8,0.7,0.5")
    g.add_argument("--max-reuse", type=number(int, 0), default=None, help="force a computed frame after N reuses (default: the weights' trained gap, when recorded)")
    g.add_argument("--reuse-max-area", type=number(float, 0.0, 1.0, low_open=True), default=None,
                   help="gfrtm: always compute an object covering more than this share of the frame (default: the "
                        "weights' own, GfrtmConfig.reuse_max_area; 1: no rule)")
    g.add_argument("--input-size", default=None, help="model input HxW for --weights (default: the checkpoint's)")
    g.add_argument("--threads", type=threads_arg(), default=None, help="CPU threads for the backend")
    g.add_argument("--save-masks", metavar="DIR", default=None,
                   help="write predicted masks in DAVIS layout (DIR/<seq>/<frame>.png; DIR/tau<t>/... for several taus)")
    g.add_argument("--plot", metavar="PNG", default=None, help="save the FPS-vs-J&F plot (default OUT/tau_sweep.png)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--davis", metavar="DIR", required=True,
                        help="DAVIS-layout folder (JPEGImages/480p, Annotations/480p)")
    parser.add_argument("--sequences", metavar="LIST", default=None,
                        help="comma-separated sequence names or an ImageSets list name (default: every "
                             "sequence folder in --results)")
    parser.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default 480p)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write global_results.csv, per-object_results.csv and results.json "
                             "(default: the results folder)")
    parser.add_argument("--json", action="store_true", help="print the global results as JSON instead of a table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_results_arguments(parser)
    add_model_arguments(parser)


def format_table(summary: dict) -> str:
    """The global row and one row per object, as the official tool prints them."""
    from edgevos.metrics import GLOBAL_MEASURES

    g = summary["global"]
    widths = [max(len(m), 8) for m in GLOBAL_MEASURES]
    lines = ["Global results",
             "  ".join(m.rjust(w) for m, w in zip(GLOBAL_MEASURES, widths)),
             "  ".join(f"{g[m]:.3f}".rjust(w) for m, w in zip(GLOBAL_MEASURES, widths)),
             "",
             "Per object"]
    rows = summary["per_object"]
    name_w = max([len("Sequence")] + [len(n) for n in rows])
    lines.append(f"{'Sequence'.ljust(name_w)}  {'J-Mean':>8}  {'F-Mean':>8}  {'J&F-Mean':>8}")
    for name, r in rows.items():
        lines.append(f"{name.ljust(name_w)}  {r['J-Mean']:8.3f}  {r['F-Mean']:8.3f}  {r['J&F-Mean']:8.3f}")
    return "\n".join(lines)


def main_results(args) -> int:
    """Score saved masks (``--results``) against ``--davis``."""
    import json
    import time

    from edgevos.metrics import evaluate_results, write_csvs, write_json

    if not args.results:
        raise InputError("pass --results DIR (a folder of <sequence>/<frame>.png masks) to evaluate saved masks")
    out = Path(args.out) if args.out else Path(args.results)
    if args.out or out.is_dir():  # a missing --results folder is named by the scoring below
        check_writable(out, "--out" if args.out else "--out (default: the --results folder)", directory=True)
    t0 = time.perf_counter()
    summary = evaluate_results(args.results, args.davis, sequences=args.sequences,
                               resolution=args.resolution, progress=not (args.no_progress or getattr(args, "quiet", False)))
    seconds = time.perf_counter() - t0
    log.debug(f"scored {len(summary['per_object'])} object(s) of {sorted(summary['sequences'])} from {args.results} "
              f"against {args.davis} in {seconds:.2f} s")
    g_csv, o_csv = write_csvs(out, summary)
    js = write_json(out / "results.json", {
        "results": str(args.results), "davis": str(args.davis),
        "sequences": list(summary["sequences"]), "seconds": seconds,
        "global": summary["global"], "per_object": summary["per_object"],
        "per_frame": {seq: {"frames": r["frames"], "J": r["J"], "F": r["F"]}
                      for seq, r in summary["sequences"].items()},
    })
    if args.json:
        print(json.dumps(summary["global"], indent=2))
    else:
        print(format_table(summary))
        print(f"\n{len(summary['sequences'])} sequence(s), {len(summary['per_object'])} object(s) in {seconds:.1f} s")
        print(f"wrote {g_csv}, {o_csv}, {js}")
    return 0


def main_model(args) -> int:
    """Run a model family over ``--davis`` and score it (model-evaluation mode): J&F, reuse rate, FPS per tau."""
    import json

    from edgevos.data import DavisDataset
    from edgevos.evaluate_model import evaluate, format_rows, plot_rows

    from edgevos.models.registry import get_family

    get_family(args.family)
    taus = parse_taus(args.tau)
    out = Path(args.out or args.save_masks or ".")
    # every output location is checked before the first sequence runs, not after the last
    if args.save_masks:
        check_writable(args.save_masks, "--save-masks", directory=True)
    check_writable(out, "--out", directory=True)
    if args.plot and len(taus) > 1:
        check_writable(args.plot, "--plot")
    ds = DavisDataset(args.davis, sequences=args.sequences, resolution=args.resolution)
    seqs = [ds[n] for n in ds.sequences]
    options = {}
    if args.reuse_max_area is not None:
        if args.family != "gfrtm":
            raise InputError(f"--reuse-max-area {args.reuse_max_area}: only gfrtm has the size rule (got --family "
                             f"{args.family}); drop the option")
        options["reuse_max_area"] = args.reuse_max_area
    rows = evaluate(seqs, tau=taus, family=args.family, weights=args.weights, bundle=args.bundle,
                    backend=args.backend, precision=args.precision, max_reuse=args.max_reuse,
                    input_size=args.input_size, threads=args.threads, save_masks=args.save_masks,
                    progress=not (args.no_progress or getattr(args, "quiet", False)), program_options=options)
    out.mkdir(parents=True, exist_ok=True)
    what = args.bundle or args.weights
    print(f"{args.family} ({what}) on {len(seqs)} sequence(s): {', '.join(ds.sequences)}")
    print(format_rows(rows))
    js = out / "model_eval.json"
    js.write_text(json.dumps({"family": args.family, "weights": args.weights, "bundle": args.bundle,
                              "backend": args.backend or ("onnxruntime" if args.bundle else "torch"),
                              "precision": args.precision, "davis": str(args.davis),
                              "sequences": ds.sequences, "rows": rows}, indent=2, default=float))
    print(f"wrote {js}")
    if len(taus) > 1:
        png = plot_rows(rows, Path(args.plot) if args.plot else out / "tau_sweep.png",
                        title=f"{args.family}: FPS vs J&F over tau")
        if png:
            print(f"wrote {png}")
    return 0


def main(args) -> int:
    if getattr(args, "family", None):
        return main_model(args)
    return main_results(args)
