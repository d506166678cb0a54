"""Segment a video file: overlay MP4 + DAVIS-layout mask PNGs.

    python samples/segment_video.py                                  # generates a clip with its first mask
    python samples/segment_video.py clip.mp4 --box 120,80,200,150    # your video, object given by a box
    python samples/segment_video.py clip.mp4 --mask first.png --bundle runs/demo/bundle
"""
import argparse
from pathlib import Path

from edgevos import Session, open_sink, run

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

first_mask = args.mask
video = args.video
if video is None:  # a generated clip with exact ground truth, encoded to MP4
    from edgevos.data import SyntheticConfig, make_sequence

    seq = make_sequence(SyntheticConfig(height=240, width=432, num_frames=args.frames, num_objects=2, seed=3))
    video = out / "clip.mp4"
    with open_sink(f"file://{video.resolve()}", fps=25, overlay=False) as sink:
        for i in range(len(seq)):
            sink.write(i, seq.frame(i), None)
    first_mask = seq.mask(0) if first_mask is None else first_mask
if first_mask is None and not args.box:
    p.error("give the object in the first frame: --mask PNG or --box x,y,w,h")

if args.bundle:
    session = Session.from_bundle(args.bundle, backend="onnxruntime", tau=args.tau)
else:
    session = Session.from_weights("gfrtm", args.weights, input_size=args.input_size, tau=args.tau)

summary = run(f"file://{Path(video).resolve()}", [f"file://{(out / 'overlay.mp4').resolve()}",
              f"masks://{(out / 'masks').resolve()}"], session=session, first_mask=None if args.box else first_mask,
              init_box=[args.box] if args.box else None, warmup=5, power=False)
if summary.error:
    raise SystemExit(f"error: {summary.error}")
print(summary.table())
print(f"wrote {out / 'overlay.mp4'} and {out / 'masks'}/ ({summary.sink_frames[1]} masks)")
