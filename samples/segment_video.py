"""Segment a video file: overlay MP4 + DAVIS-layout mask PNGs.

    python samples/segment_video.py                                  # generates a clip with its first mask
    python samples/segment_video.py clip.mp4 --box 120,80,200,150    # your video, object given by a box
    python samples/segment_video.py clip.mp4 --mask first.png --bundle runs/demo/bundle
"""
import argparse
from pathlib import Path

from edgevos.data import grabcut_mask, parse_box
from edgevos.runtime.pipeline import run_pipeline
from edgevos.runtime.session import Session
from edgevos.runtime.sinks import open_sink
from edgevos.runtime.sources import open_source
from edgevos.runtime.stats import format_table

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("video", nargs="?", help="video file (default: a generated clip)")
p.add_argument("--mask", help="first-frame mask PNG (object ids)")
p.add_argument("--box", help="x,y,w,h of the object in the first frame (GrabCut)")
p.add_argument("--weights", default="default", help="shipped weights name or checkpoint path (PyTorch)")
p.add_argument("--bundle", help="exported bundle: run it with ONNX Runtime instead of PyTorch")
p.add_argument("--input-size", default="256x448", help="model input HxW for --weights")
p.add_argument("--tau", type=float, default=0.7, help="reuse-gate threshold (1 = never reuse)")
p.add_argument("--frames", type=int, default=40, help="length of the generated clip")
p.add_argument("--out", default="runs/segment_video")
args = p.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

first_mask = None
video = args.video
if video is None:  # a generated clip with exact ground truth, encoded to MP4
    from edgevos.data import SyntheticConfig, make_sequence

    seq = make_sequence(SyntheticConfig(height=240, width=432, num_frames=args.frames, num_objects=2, seed=3))
    video = out / "clip.mp4"
    with open_sink(f"file://{video.resolve()}", fps=25, overlay=False) as sink:
        for i in range(len(seq)):
            sink.write(i, seq.frame(i), None)
    first_mask = seq.mask(0)
if args.mask:
    from edgevos.data import read_mask
    first_mask = read_mask(args.mask)
elif args.box:
    box = parse_box(args.box)
    first_mask = lambda rgb: grabcut_mask(rgb, [box])  # noqa: E731
if first_mask is None:
    p.error("give the object in the first frame: --mask PNG or --box x,y,w,h")

if args.bundle:
    session = Session.from_bundle(args.bundle, backend="onnxruntime", tau=args.tau)
else:
    from edgevos.models.registry import get_family

    h, w = (int(v) for v in args.input_size.split("x"))
    session = Session.from_model(get_family("gfrtm").build(weights=args.weights, input_size=(h, w)), tau=args.tau)

source = open_source(f"file://{Path(video).resolve()}")
sinks = [open_sink(f"file://{(out / 'overlay.mp4').resolve()}", fps=source.fps or 25),
         open_sink(f"masks://{(out / 'masks').resolve()}")]
summary = run_pipeline(source, sinks, session, first_mask=first_mask, warmup=5)
if summary.error:
    raise SystemExit(f"error: {summary.error}")
print(format_table(summary.as_dict()))
print(f"wrote {out / 'overlay.mp4'} and {out / 'masks'}/ ({sinks[1].frames} masks)")
