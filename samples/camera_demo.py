"""Live camera segmentation: point at an object, give its box, watch the overlay.

    python samples/camera_demo.py --source v4l2:///dev/video0 --init-box 200,120,160,160
    python samples/camera_demo.py --source csi://0 --init-box 500,300,200,200     # Jetson CSI camera
    python samples/camera_demo.py                    # no camera here: falls back to test:// (synthetic)

The overlay goes to the screen when $DISPLAY is set, else to an MP4.  Ctrl-C ends
the run cleanly (the video stays playable).
"""
import argparse
import os
from pathlib import Path

from edgevos import Session, run

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--source", default="v4l2:///dev/video0", help="camera URI: v4l2:///dev/videoN, csi://0, rtsp://...")
p.add_argument("--init-box", help="x,y,w,h of the object in the first frame (default: the centre of the image)")
p.add_argument("--weights", default="default", help="shipped weights name or checkpoint path (PyTorch)")
p.add_argument("--bundle", help="exported bundle (ONNX Runtime / TensorRT) instead of PyTorch weights")
p.add_argument("--backend", default="onnxruntime", help="backend for --bundle: onnxruntime or tensorrt")
p.add_argument("--input-size", default="256x448", help="model input HxW for --weights")
p.add_argument("--tau", type=float, default=0.7, help="reuse-gate threshold")
p.add_argument("--frames", type=int, default=60, help="stop after this many frames (0 = until Ctrl-C)")
p.add_argument("--out", default="runs/camera_demo.mp4", help="overlay video when there is no display")
args = p.parse_args()

source_uri = args.source
if source_uri.startswith("v4l2://") and not Path(source_uri[len("v4l2://"):]).exists():
    print(f"{source_uri}: no such camera; using the synthetic test:// source instead")
    source_uri = "test://?frames=120&objects=1&size=240x432"

boxes = [args.init_box] if args.init_box else None
centre = None  # the synthetic source carries its first mask; a camera without --init-box: the centre third
if boxes is None and not source_uri.startswith("test://"):
    from edgevos.data import grabcut_mask

    centre = lambda rgb: grabcut_mask(rgb, [(rgb.shape[1] // 3, rgb.shape[0] // 3,  # noqa: E731
                                            rgb.shape[1] // 3, rgb.shape[0] // 3)])

if args.bundle:
    session = Session.from_bundle(args.bundle, backend=args.backend, tau=args.tau)
else:
    session = Session.from_weights("gfrtm", args.weights, input_size=args.input_size, tau=args.tau)

Path(args.out).parent.mkdir(parents=True, exist_ok=True)
sink_uri = "display://0" if os.environ.get("DISPLAY") else f"file://{Path(args.out).resolve()}"
summary = run(source_uri, [sink_uri], session=session, first_mask=centre, init_box=boxes,
              max_frames=args.frames or None, power=False, status=lambda line: print("\r" + line, end="", flush=True))
if summary.error:
    raise SystemExit(f"error: {summary.error}")
print("\n" + summary.table())
print(f"overlay: {sink_uri} ({summary.sink_frames[0]} frames)")
