"""A Session inside your own application: your loop, or a GStreamer appsink callback.

    python samples/embed_in_app.py            # a plain loop, then a GStreamer pipeline

A robotics node owns its camera and event loop and needs only "frame in -> mask out":
``SegmenterNode.on_frame``.  The first frame starts the session with a mask from your
detector, later frames step it; each mask goes to ``publish`` (a ROS publisher, a queue...).
"""
import argparse

import numpy as np

from edgevos import Session, gstreamer
from edgevos.data import SyntheticConfig, make_sequence


class SegmenterNode:
    def __init__(self, session, detect, publish):
        self.session, self.detect, self.publish, self.started = session, detect, publish, False

    def on_frame(self, rgb: np.ndarray) -> None:
        if not self.started:
            result, self.started = self.session.start(rgb, self.detect(rgb)), True
        else:
            result = self.session.step(rgb)
        self.publish(result.mask, result.reused, sum(result.stage_ms.values()))


def ball_box(rgb):  # stand-in detector: a box around videotestsrc's bright ball, with a margin
    ys, xs = np.nonzero(rgb.max(axis=2) > 128)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    mask[max(ys.min() - 24, 0):ys.max() + 24, max(xs.min() - 24, 0):xs.max() + 24] = 1
    return mask


p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--weights", default="default", help="shipped weights name or checkpoint path")
p.add_argument("--input-size", default="256x448")
p.add_argument("--frames", type=int, default=30)
args = p.parse_args()
log = lambda mask, reused, ms: print(f"  object pixels {int((mask > 0).sum()):6d}  reused {reused!s:5}  {ms:6.1f} ms")  # noqa: E731

print("1) your own loop (frames from a driver, a ROS topic, a file...)")
seq = make_sequence(SyntheticConfig(height=240, width=432, num_frames=args.frames, num_objects=1, seed=5))
session = Session.from_weights("gfrtm", args.weights, input_size=args.input_size, tau=0.85)
node = SegmenterNode(session, detect=lambda rgb: seq.mask(0), publish=log)
for i in range(len(seq)):
    node.on_frame(seq.frame(i))

print("2) a GStreamer pipeline calling back on every decoded frame (appsink 'new-sample')")
Gst = gstreamer()  # DependencyError naming the extra to install when GStreamer is absent
pipe = Gst.parse_launch(f"videotestsrc pattern=ball num-buffers={args.frames} ! videoconvert ! "
                        "video/x-raw,format=RGB,width=432,height=240 ! appsink name=sink emit-signals=true sync=false")
session.reset()  # the same model, a new video
node = SegmenterNode(session, detect=ball_box, publish=log)


def on_sample(sink):  # runs in GStreamer's streaming thread; 432 * 3 bytes per row: no row padding
    buf = sink.emit("pull-sample").get_buffer()
    node.on_frame(np.frombuffer(buf.extract_dup(0, buf.get_size()), np.uint8).reshape(240, 432, 3))
    return Gst.FlowReturn.OK


pipe.get_by_name("sink").connect("new-sample", on_sample)
pipe.set_state(Gst.State.PLAYING)
msg = pipe.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
pipe.set_state(Gst.State.NULL)
print("end of stream" if msg.type == Gst.MessageType.EOS else f"error: {msg.parse_error()[0].message}")
