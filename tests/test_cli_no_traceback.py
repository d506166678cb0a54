"""Every verb of ``edgevos`` against a table of bad inputs: each ends with the documented exit
code (README "Exit codes": 1 an error edgevos names, 2 a command line argparse refuses) and a
one-line message naming the value, never with a Python traceback.

The cases run in this process through ``edgevos.cli.main`` (a subprocess per case would import
torch again and again); a few run the installed ``edgevos`` command in a subprocess to see what
a user's terminal shows.  ``run`` cases that need a model use the colour double of
tests/test_run_cli.py (bundle ``DOUBLE``); bundle cases load real (broken) bundles.  Every case
must fail before any real work: a guard alarm fails a case that starts computing.
"""
from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_run_cli import ColourSession  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# (argv with {T} = a folder of fixtures and {RO} = a read-only folder, exit code, words the message holds)
RUN = [
    ("run", 2, "required: source"),
    ("run test://", 2, "required: --bundle"),
    ("run test:// --bundle {T}/nonexistent", 1, "nonexistent does not exist"),
    ("run test:// --bundle {T}/file", 1, "is a file, not a bundle directory"),
    ("run test:// --bundle {T}/emptybundle", 1, "has no manifest.json"),
    ("run test:// --bundle {T}/garbagebundle", 1, "manifest.json is unreadable"),
    ("run test:// --bundle {T}/listbundle", 1, "is not a JSON object"),
    ("run test:// --bundle DOUBLE --backend nosuch", 2, "argument --backend: invalid choice: 'nosuch'"),
    ("run test:// --bundle DOUBLE --precision nosuch", 1, "nosuch"),
    ("run test:// --bundle DOUBLE --tau 2", 2, "argument --tau: 2 must be at most 1"),
    ("run test:// --bundle DOUBLE --tau abc", 2, "argument --tau: 'abc' is not a number"),
    ("run test:// --bundle DOUBLE --tau nan", 2, "argument --tau: 'nan' is not a finite number"),
    ("run test:// --bundle DOUBLE --threads 0", 2, "argument --threads: 0 must be at least 1"),
    ("run test:// --bundle DOUBLE --threads 100000", 2, "argument --threads: 100000 must be at most 256"),
    ("run test:// --bundle DOUBLE --max-frames 0", 2, "argument --max-frames"),
    ("run test:// --bundle DOUBLE --max-reuse -1", 2, "argument --max-reuse"),
    ("run test:// --bundle DOUBLE --timeout -1", 2, "argument --timeout"),
    ("run test:// --bundle DOUBLE --target-fps 0", 2, "argument --target-fps"),
    ("run test:// --bundle DOUBLE --pin-inference abc", 1, "--pin-inference 'abc'"),
    ("run test:// --bundle DOUBLE --pin-inference 4096", 1, "cores [4096] are not available"),
    ("run file://{T}/nonexistent.mp4 --bundle DOUBLE --init-box 1,1,5,5", 1, "file not found"),
    ("run file://{T}/notvideo.mp4 --bundle DOUBLE --init-box 1,1,5,5", 1, "Could not determine type of stream"),
    ("run file://{T}/empty.mp4 --bundle DOUBLE --init-box 1,1,5,5", 1, "file is empty (0 bytes)"),
    ("run file://{T}/dir --bundle DOUBLE --init-box 1,1,5,5", 1, "is a directory, not a video file"),
    ("run file://{T}/notvideo.mp4 --bundle DOUBLE", 1, "has no ground truth: pass --init-mask"),
    ("run nosuch://x --bundle DOUBLE", 1, "unknown source URI scheme 'nosuch://'"),
    ("run http://example.com/x.mp4 --bundle DOUBLE --init-box 1,1,5,5", 1, "unknown source URI scheme 'http://'"),
    ("run '' --bundle DOUBLE", 1, "empty source URI"),
    ("run file:// --bundle DOUBLE", 1, "'file://' has no path"),
    ("run test://?frames=abc --bundle DOUBLE", 1, "'frames=abc' is not an integer"),
    ("run test://?frames=0 --bundle DOUBLE", 1, "frames must be >= 1"),
    ("run test://?objects=300 --bundle DOUBLE", 1, "objects in 1..20"),
    ("run test://?size=axb --bundle DOUBLE", 1, "'size=axb' is not a size"),
    ("run test://?size=100000x100000 --bundle DOUBLE", 1, "size=100000x100000 is larger than a generated frame"),
    ("run test://?fps=0 --bundle DOUBLE", 1, "fps=0 must be a positive rate"),
    ("run test://?bogus=1 --bundle DOUBLE", 1, "unknown option(s) ['bogus']"),
    ("run davis://{T}/nonexistent?seq=bear --bundle DOUBLE", 1, "DAVIS folder not found"),
    ("run davis://{T}/dir --bundle DOUBLE", 1, "name the sequence"),
    ("run davis://{T}/dir?seq=bear --bundle DOUBLE", 1, "missing folder"),
    ("run v4l2:///dev/video99 --bundle DOUBLE --init-box 1,1,5,5", 1, "/dev/video99 does not exist"),
    ("run v4l2://x --bundle DOUBLE --init-box 1,1,5,5", 1, "does not name a device"),
    ("run csi://abc --bundle DOUBLE --init-box 1,1,5,5", 1, "CSI sensor id must be a number"),
    ("run rtsp:// --bundle DOUBLE --init-box 1,1,5,5", 1, "'rtsp://' has no host"),
    ("run test://?frames=5 file://{T}/out.avi --bundle DOUBLE", 1, "unsupported video file extension '.avi'"),
    ("run test://?frames=5 file://{T}/file/out.mp4 --bundle DOUBLE", 1, "cannot create output directory"),
    ("run test://?frames=5 file://{RO}/out.mp4 --bundle DOUBLE", 1, "is not writable"),
    ("run test://?frames=5 file://{T}/o.mp4?encoder=nosuch --bundle DOUBLE", 1, "encoder 'nosuch' is unknown"),
    ("run test://?frames=5 file://{T}/o.mp4?bogus=1 --bundle DOUBLE", 1, "['bogus'] is not one"),
    ("run test://?frames=5 masks://{RO}/m --bundle DOUBLE", 1, "Read-only file system"),
    ("run test://?frames=5 masks://{RO} --bundle DOUBLE", 1, "is not writable"),
    ("run test://?frames=5 masks://{T}/file --bundle DOUBLE", 1, "cannot create output directory"),
    ("run test://?frames=5 masks://{T}/m?overwrite=maybe --bundle DOUBLE", 1, "overwrite='maybe' must be 1 or 0"),
    ("run test://?frames=5 masks://{T}/m?bogus=1 --bundle DOUBLE", 1, "unknown option(s) ['bogus']"),
    ("run test://?frames=5 masks:// --bundle DOUBLE", 1, "'masks://' has no path"),
    ("run test://?frames=5 json://{T}/dir --bundle DOUBLE", 1, "Is a directory"),
    ("run test://?frames=5 json://{RO}/s.jsonl --bundle DOUBLE", 1, "is not writable"),
    ("run test://?frames=5 nosuch://x --bundle DOUBLE", 1, "unknown sink URI scheme 'nosuch://'"),
    ("run test://?frames=5 rtsp://127.0.0.1:1/x --bundle DOUBLE", 1, "is the RTSP server running"),
    ("run file://{T}/in.mkv file://{T}/in.mkv --bundle DOUBLE --init-box 1,1,5,5", 1, "writing it would destroy the input"),
    ("run test://?frames=5 masks://{T}/same masks://{T}/same --bundle DOUBLE", 1, "are the same path"),
    ("run test://?frames=5 --log {T}/dir --bundle DOUBLE", 1, "--log '{T}/dir' is a directory"),
    ("run test://?frames=5 --log {RO}/log.json --bundle DOUBLE", 1, "is not writable"),
    ("run test://?frames=5 --log {T}/file/log.json --bundle DOUBLE", 1, "is a file, so no directory can be made"),
    ("run test://?frames=5 --bundle DOUBLE --init-mask {T}/nonexistent.png", 1, "mask file not found"),
    ("run test://?frames=5 --bundle DOUBLE --init-mask {T}/bad.png", 1, "cannot read mask"),
    ("run test://?frames=5 --bundle DOUBLE --init-box 1,2,3", 1, "box '1,2,3' must be x,y,w,h"),
    ("run test://?frames=5 --bundle DOUBLE --init-box a,b,c,d", 1, "box 'a,b,c,d' must be x,y,w,h"),
    ("run test://?frames=5 --bundle DOUBLE --init-box 0,0,0,0", 1, "width and height must be positive"),
    ("run test://?frames=5 --bundle DOUBLE --init-box inf,0,5,5", 1, "inf"),
    ("run test://?frames=5 --bundle DOUBLE --init-box 5000,5000,10,10", 1, "lies outside the 432x240 frame"),
    ("run test://?frames=5 --bundle DOUBLE --init-box 1,1,5,5 --init-mask x.png", 2, "not allowed with argument"),
    ("run test://?frames=5 --bundle DOUBLE --unsupervised", 1, "--unsupervised needs an unsupervised model"),
    ("run test://?frames=5 --bundle DOUBLE --bogus", 2, "unrecognized arguments: --bogus"),
]

EVAL = [
    ("eval", 2, "required: --davis"),
    ("eval --davis {DAVIS}", 1, "pass --results DIR"),
    ("eval --davis {DAVIS} --results {T}/nonexistent", 1, "results folder not found"),
    ("eval --davis {DAVIS} --results {T}/dir", 1, "no sequence folders with PNG masks"),
    ("eval --davis {T}/nonexistent --results {RES}", 1, "nonexistent"),
    ("eval --davis {DAVIS} --results {RES} --sequences nosuch", 1, "sequence 'nosuch' not found"),
    ("eval --davis {DAVIS} --results {RES} --resolution 999p", 1, "JPEGImages/999p"),
    ("eval --davis {DAVIS} --results {T}/badres", 1, "cannot read mask"),
    ("eval --davis {DAVIS} --results {RES} --out {T}/file", 1, "--out '{T}/file' is a file"),
    ("eval --davis {DAVIS} --results {RES} --out {T}/file/x", 1, "is a file, so no directory can be made"),
    ("eval --davis {DAVIS} --results {RES} --out {RO}", 1, "is not writable"),
    ("eval --davis {DAVIS} --results {RES} --out {RO}/x", 1, "is not writable"),
    ("eval --davis {DAVIS} --family nosuch", 1, "unknown model family 'nosuch'"),
    ("eval --davis {DAVIS} --family gfrtm --weights {T}/nonexistent.pt", 1, "nonexistent.pt' not found"),
    ("eval --davis {DAVIS} --family gfrtm --weights {T}/bad.pt", 1, "refused to load checkpoint"),
    ("eval --davis {DAVIS} --family gfrtm --weights nosuchname", 1, "no shipped gfrtm weights named 'nosuchname'"),
    ("eval --davis {DAVIS} --family gfrtm --tau 2", 1, "--tau values [2.0] must lie in [0, 1]"),
    ("eval --davis {DAVIS} --family gfrtm --tau x", 1, "--tau 'x' is not"),
    ("eval --davis {DAVIS} --family gfrtm --max-reuse -1", 2, "argument --max-reuse"),
    ("eval --davis {DAVIS} --family gfrtm --max-reuse x", 2, "argument --max-reuse: 'x' is not a whole number"),
    ("eval --davis {DAVIS} --family gfrtm --threads 0", 2, "argument --threads: 0 must be at least 1"),
    ("eval --davis {DAVIS} --family gfrtm --threads -1", 2, "argument --threads"),
    ("eval --davis {DAVIS} --family gfrtm --threads 100000", 2, "argument --threads: 100000 must be at most"),
    ("eval --davis {DAVIS} --family gfrtm --input-size 12x", 1, "--input-size '12x' is not a size"),
    ("eval --davis {DAVIS} --family gfrtm --input-size 0x0", 1, "both sides must be positive"),
    ("eval --davis {DAVIS} --family gfrtm --bundle {T}/nonexistent", 1, "does not exist"),
    ("eval --davis {DAVIS} --family gfrtm --bundle {T}/garbagebundle", 1, "manifest.json is unreadable"),
    ("eval --davis {DAVIS} --family gfrtm --save-masks {T}/file/m", 1, "--save-masks"),
    ("eval --davis {DAVIS} --family gfrtm --save-masks {RO}/m", 1, "is not writable"),
    ("eval --davis {DAVIS} --family gfrtm --out {T}/file/o", 1, "--out"),
    ("eval --davis {DAVIS} --family gfrtm --plot {T}/file/p.png --tau 1,0.7", 1, "--plot"),
    ("eval --davis {DAVIS} --family gfrtm --precision int8-cpu", 1, "--precision int8-cpu needs an exported --bundle"),
    ("eval --davis {DAVIS} --family gfrtm --backend tensorrt", 1, "needs an exported --bundle"),
    ("eval --davis {DAVIS} --family gfrtm --sequences nosuch", 1, "sequence 'nosuch' not found"),
]

EXPORT = [
    ("export", 2, "required: --out"),
    ("export --out {T}/b01 --family nosuch", 1, "unknown model family 'nosuch'"),
    ("export --out {T}/b02 --weights {T}/nonexistent.pt", 1, "nonexistent.pt' not found"),
    ("export --out {T}/b03 --weights {T}/bad.pt", 1, "refused to load checkpoint"),
    ("export --out {T}/b04 --weights nosuchname", 1, "no shipped gfrtm weights named 'nosuchname'"),
    ("export --out {T}/b05 --backbone nosuch", 1, "--backbone nosuch: unknown backbone"),
    ("export --out {T}/b06 --preset 3-7", 1, "family 'gfrtm' has no pathway presets"),
    ("export --out {T}/b07 --family slowfast --preset 9-9", 1, "unknown SlowFast preset '9-9'"),
    ("export --out {T}/b08 --precision nosuch", 1, "unknown ['nosuch']"),
    ("export --out {T}/b09 --precision ,", 1, "--precision ,"),
    ("export --out {T}/b10 --calib {T}/nonexistent", 1, "calibration source"),
    ("export --out {T}/b11 --calib {T}/notvideo.mp4", 1, "needs the mask of its first frame"),
    ("export --out {T}/b12 --calib {T}/notvideo.mp4 --calib-mask {T}/nonexistent.png", 1, "--calib-mask"),
    ("export --out {T}/b13 --calib-mask {T}/nonexistent.png", 1, "is for a video --calib"),
    ("export --out {T}/b14 --calib {T}/dir", 1, "missing folder"),
    ("export --out {T}/b15 --calib test://x", 1, "use test:// or test://N"),
    ("export --out {T}/b16 --calib {DAVIS} --calib-sequences nosuch", 1, "--calib-sequences: 'nosuch' is not in"),
    ("export --out {T}/b17 --calib {DAVIS} --heldout-sequences nosuch", 1, "--heldout-sequences: 'nosuch' is not in"),
    ("export --out {T}/b18 --calib-frames 0", 1, "calibration needs at least 2 frames"),
    ("export --out {T}/b19 --calib-frames x", 2, "argument --calib-frames"),
    ("export --out {T}/b20 --calib-samples 0", 2, "argument --calib-samples"),
    ("export --out {T}/b21 --method nosuch", 1, "'nosuch' is not one of"),
    ("export --out {T}/b22 --method int8-xxx=minmax", 1, "'int8-xxx' is not an INT8 flavour"),
    ("export --out {T}/b23 --keep-float int8-xxx:foo", 1, "'int8-xxx' is not a precision of a bundle"),
    ("export --out {T}/b24 --input-size 100x100", 1, "input_size 100x100 is not a positive multiple of 32"),
    ("export --out {T}/b25 --input-size abc", 1, "--input-size 'abc' is not a size"),
    ("export --out {T}/file", 1, "is a file, not a directory"),
    ("export --out {T}/nonempty", 1, "exists and is not empty"),
    ("export --out {T}/file/b", 1, "is a file, so no directory can be made"),
    ("export --out {RO}/b", 1, "is not writable"),
    ("export --out {T}/b26 --threads 0", 2, "argument --threads"),
    ("export --out {T}/b27 --threads 100000", 2, "argument --threads"),
    ("export --out {T}/b28 --opset 1", 2, "argument --opset: 1 must be at least 7"),
    ("export --out {T}/b29 --opset 99", 2, "argument --opset: 99 must be at most 20"),
    ("export --out {T}/b30 --tau 2", 2, "argument --tau"),
    ("export --out {T}/b31 --tau nan", 2, "argument --tau"),
    ("export --out {T}/b32 --calib-tau -1", 2, "argument --calib-tau"),
    ("export --out {T}/b33 --heldout-frames 0", 2, "argument --heldout-frames"),
    ("export --out {T}/b34 --min-calib-samples -1", 2, "argument --min-calib-samples"),
    ("export --out {T}/b35 --trt-float fp8", 2, "argument --trt-float"),
    ("export --out {T}/b36 --backbone-weights {T}/nonexistent.pth", 2, "backbone weights"),
    ("export --out {T}/b37 --backbone-weights {T}/bad.pt", 2, "refused to load backbone weights"),
]

BUILD = [
    ("build", 2, "required: bundle"),
    ("build {T}/nonexistent", 1, "does not exist"),
    ("build {T}/file", 1, "is a file, not a bundle directory"),
    ("build {T}/emptybundle", 1, "has no manifest.json"),
    ("build {T}/garbagebundle", 1, "manifest.json is unreadable"),
    ("build {T}/emptybundle --precision ''", 1, "--precision is empty"),
    ("build {T}/emptybundle --precision nosuch", 1, "TensorRT precision 'nosuch' is unknown"),
    ("build {T}/emptybundle --dla -1", 1, "DLA cores are numbered from 0"),
    ("build {T}/emptybundle --dla x", 2, "argument --dla"),
    ("build {T}/emptybundle --workspace-mb 0", 1, "--workspace-mb 0 must be positive"),
    ("build {T}/emptybundle --opt-level 9", 2, "argument --opt-level: 9 must be at most 5"),
    ("build {T}/emptybundle --trt-float fp8", 2, "argument --trt-float"),
    ("build {T}/nonexistent --register", 1, "does not exist"),
    ("build {T}/garbagebundle --register", 1, "manifest.json is unreadable"),
]

IMPORT_WEIGHTS = [
    ("import-weights", 2, "required: src, --out"),
    ("import-weights {T}/nonexistent.pth --out {T}/o.pt --no-backbone", 1, "not found"),
    ("import-weights {T}/text.txt --out {T}/o.pt --no-backbone", 1, "cannot load upstream checkpoint"),
    ("import-weights {T}/bad.pt --out {T}/o.pt --no-backbone", 1, "refused to load upstream checkpoint"),
    ("import-weights {T}/dir --out {T}/o.pt --no-backbone", 1, "not found"),
    ("import-weights {T}/bad.pt --out {T}/dir --no-backbone", 1, "--out '{T}/dir' is a directory"),
    ("import-weights {T}/bad.pt --out {T}/file/o.pt --no-backbone", 1, "is a file, so no directory can be made"),
    ("import-weights {T}/bad.pt --out {RO}/o.pt --no-backbone", 1, "is not writable"),
    ("import-weights {T}/bad.pt --out {T}/o.pt", 1, "no --backbone-weights given"),
    ("import-weights {T}/bad.pt --out {T}/o.pt --backbone-weights {T}/nonexistent.pth", 2, "not found"),
    ("import-weights {T}/bad.pt --out {T}/o.pt --kind nosuch", 2, "argument --kind: invalid choice"),
]

DEMO = [
    ("demo --out {T}/file", 1, "--out '{T}/file' is a file"),
    ("demo --out {T}/file/d", 1, "is a file, so no directory can be made"),
    ("demo --out {RO}/d", 1, "is not writable"),
    ("demo --out {T}/d1 --weights {T}/nonexistent.pt", 1, "nonexistent.pt' not found"),
    ("demo --out {T}/d2 --weights {T}/bad.pt", 1, "refused to load checkpoint"),
    ("demo --out {T}/d3 --frames 0", 2, "argument --frames"),
    ("demo --out {T}/d4 --clip-size abc", 1, "--clip-size 'abc' is not a size"),
    ("demo --out {T}/d5 --clip-size 0x0", 1, "both sides must be positive"),
    ("demo --out {T}/d6 --input-size abc", 1, "--input-size 'abc' is not a size"),
    ("demo --out {T}/d7 --input-size 100x100", 1, "positive multiples of 32"),
    ("demo --out {T}/d8 --tau 2", 1, "--tau values [2.0] must lie in [0, 1]"),
    ("demo --out {T}/d9 --max-reuse -1", 2, "argument --max-reuse"),
    ("demo --out {T}/d10 --threads 0", 2, "argument --threads"),
    ("demo --out {T}/d11 --pin-inference abc", 1, "--pin-inference 'abc'"),
    ("demo --out {T}/d12 --pin-inference 4096", 1, "cores [4096] are not available"),
    ("demo --out {T}/d13 --precision nosuch", 2, "argument --precision: invalid choice"),
    ("demo --out {T}/d14 --seed -1", 2, "argument --seed"),
]

BENCH = [
    ("bench", 2, "required: --source, --out"),
    ("bench --source {T}/nonexistent --out {T}/bo", 1, "--source {T}/nonexistent does not exist"),
    ("bench --source {T}/notvideo.mp4 --out {T}/bo", 1, "pass the mask of its first frame"),
    ("bench --source test:// --out {T}/file", 1, "{T}/file"),
    ("bench --source test:// --out {T}/file/x", 1, "Not a directory"),
    ("bench --source test:// --out {RO}/x", 1, "Read-only file system"),
    ("bench --source test:// --out {T}/bo --family nosuch", 1, "unknown model family 'nosuch'"),
    ("bench --source test:// --out {T}/bo --backend nosuch", 1, "--backend 'nosuch' is unknown"),
    ("bench --source test:// --out {T}/bo --precision nosuch", 1, "--precision 'nosuch' is unknown"),
    ("bench --source test:// --out {T}/bo --tau 2", 1, "--tau values [2.0] must lie in [0, 1]"),
    ("bench --source test:// --out {T}/bo --input-size abc", 1, "--input-size 'abc' is not a size"),
    ("bench --source test:// --out {T}/bo --frames 0", 1, "--frames 0: need at least 3 frames"),
    ("bench --source test:// --out {T}/bo --warmup -1", 1, "--warmup -1 must be >= 0"),
    ("bench --source test:// --out {T}/bo --threads 0", 2, "argument --threads"),
    ("bench --source test:// --out {T}/bo --max-reuse -1", 2, "argument --max-reuse"),
]

TRAIN = [
    ("train", 2, "required: family"),
    ("train nosuch", 2, "argument family: invalid choice"),
    ("train gfrtm --davis {T}/nonexistent --out {T}/tr", 1, "DAVIS folder not found"),
    ("train gfrtm --out {T}/file", 1, "{T}/file"),
    ("train gfrtm --out {T}/file/x", 1, "Not a directory"),
    ("train gfrtm --out {RO}/x", 1, "Read-only file system"),
    ("train gfrtm --out {T}/tr --input-size abc", 2, "argument --input-size"),
    ("train gfrtm --out {T}/tr --batch 0", 2, "argument --batch: 0 must be at least 1"),
    ("train gfrtm --out {T}/tr --phase1-steps -1", 2, "argument --phase1-steps"),
    ("train gfrtm --out {T}/tr --threads 0", 2, "argument --threads"),
    ("train gfrtm --out {T}/tr --phases x", 2, "argument --phases: 'x' is not a comma list of training phases"),
    ("train gfrtm --out {T}/tr --phases 9", 2, "argument --phases"),
    ("train gfrtm --out {T}/tr --lr1 nan", 2, "argument --lr1"),
    ("train gfrtm --out {T}/tr --lr1 0", 2, "argument --lr1"),
    ("train gfrtm --out {T}/tr --real-share 2", 2, "argument --real-share"),
    ("train gfrtm --out {T}/tr --runtime-share -0.5", 2, "argument --runtime-share"),
    ("train gfrtm --out {T}/tr --composites -1", 2, "argument --composites"),
    ("train gfrtm --out {T}/tr --score-noise 1.5", 2, "argument --score-noise"),
    ("train gfrtm --out {T}/tr --gate-drop-scale 0", 2, "argument --gate-drop-scale"),
    ("train gfrtm --out {T}/tr --warp-radius 9", 2, "argument --warp-radius"),
    ("train slowfast --out {T}/tr --proj-dim 0", 2, "argument --proj-dim"),
    ("train gfrtm --out {T}/tr --max-gap 0", 2, "argument --max-gap"),
    ("train gfrtm --out {T}/tr --synthetic -1", 2, "argument --synthetic"),
    ("train gfrtm --out {T}/tr --backbone nosuch", 2, "argument --backbone: invalid choice"),
    ("train gfrtm --out {T}/tr --backbone-weights {T}/nonexistent.pth", 1, "not found"),
    ("train gfrtm --out {T}/tr --init {T}/nonexistent.pt", 1, "No such file or directory: '{T}/nonexistent.pt'"),
    ("train slowfast --out {T}/tr --preset 9-9", 1, "unknown SlowFast preset '9-9'"),
    ("train slowfast --out {T}/tr --steps -1", 2, "argument --steps"),
    ("train slowfast --out {T}/tr --clip-len 0", 2, "argument --clip-len"),
    ("train slowfast --out {T}/tr --corrupt-prev 2", 2, "argument --corrupt-prev"),
]

TOP = [
    ("", 2, None),  # no verb: the help, exit 2
    ("--bogus", 2, "unrecognized arguments: --bogus"),
    ("frobnicate", 2, "invalid choice: 'frobnicate'"),
    ("doctor --bogus", 2, "unrecognized arguments: --bogus"),
    ("doctor extra", 2, "unrecognized arguments: extra"),
    ("-v run", 2, "required: source"),
]

CHECK = [
    ("check {T}/nonexistent", 1, "is not an edgevos bundle"),
    ("check {T}/file", 1, "is not an edgevos bundle"),
    ("check --dla x", 2, "argument --dla"),
    ("check --dla -1", 2, "argument --dla"),
    ("check --threads 0", 2, "argument --threads"),
    ("check --tau 5", 2, "argument --tau"),
    ("check --frames -3", 2, "argument --frames"),
    ("check --samples 0", 2, "argument --samples"),
    ("check --e2e-frames x", 2, "argument --e2e-frames"),
    ("check --workspace-mb 0", 2, "argument --workspace-mb"),
]

CASES = [("top", *c) for c in TOP] + [(v, *c) for v, table in (
    ("run", RUN), ("eval", EVAL), ("export", EXPORT), ("build", BUILD), ("import-weights", IMPORT_WEIGHTS),
    ("demo", DEMO), ("bench", BENCH), ("train", TRAIN), ("check", CHECK)) for c in table]


def _mount_ro(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The fixture files every case refers to; {RO} is a read-only tmpfs where one can be
    mounted (root ignores permission bits, so a chmod would not refuse anything)."""
    from edgevos.data import SyntheticConfig, make_sequence, write_davis, write_mask

    t = tmp_path_factory.mktemp("bad_inputs")
    (t / "text.txt").write_text("hello")
    (t / "notvideo.mp4").write_text("not a video")
    (t / "empty.mp4").write_bytes(b"")
    (t / "in.mkv").write_bytes(b"\x1aE\xdf\xa3 not really")
    (t / "dir").mkdir()
    (t / "file").write_text("x")
    (t / "emptybundle").mkdir()
    (t / "garbagebundle").mkdir()
    (t / "garbagebundle" / "manifest.json").write_text("{not json")
    (t / "listbundle").mkdir()
    (t / "listbundle" / "manifest.json").write_text("[1, 2]")
    (t / "bad.png").write_bytes(b"\x89PNG garbage")
    (t / "bad.pt").write_bytes(b"garbage")
    (t / "nonempty").mkdir()
    (t / "nonempty" / "x").write_text("x")
    seq = make_sequence(SyntheticConfig(height=48, width=80, num_frames=6, num_objects=1, seed=1, name="syn1"))
    write_davis(t / "davis", [seq], imageset="val")
    for i, name in enumerate(seq.frame_names):
        write_mask(t / "res" / "syn1" / f"{name}.png", seq.masks[i])
        (t / "badres" / "syn1").mkdir(parents=True, exist_ok=True)
        (t / "badres" / "syn1" / f"{name}.png").write_text("garbage")
    ro = t / "ro"
    mounted = _mount_ro(ro)
    yield {"T": str(t), "RO": str(ro) if mounted else None, "DAVIS": str(t / "davis"), "RES": str(t / "res")}
    if mounted:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


class _Overran(Exception):
    pass


def _alarm(signum, frame):
    raise _Overran("the case started real work instead of failing on its input")


def _argv(text: str, world: dict) -> list:
    if "{RO}" in text and world["RO"] is None:
        pytest.skip("cannot mount a read-only tmpfs here (not root)")
    return shlex.split(text.format(**world))


@pytest.mark.parametrize("verb, argv, code, words", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_bad_input_ends_in_its_exit_code_and_a_message_not_a_traceback(world, monkeypatch, capsys, verb, argv, code,
                                                                       words):
    import edgevos.runtime.session as session_mod
    from edgevos.cli import main

    real = session_mod.Session.from_bundle.__func__

    def from_bundle(cls, bundle, *args, **kwargs):
        if str(bundle) != "DOUBLE":
            return real(cls, bundle, *args, **kwargs)
        if kwargs.get("precision") not in (None, "fp32"):
            from edgevos.errors import BundleError

            raise BundleError(f"the bundle has no precision '{kwargs['precision']}'")
        return ColourSession()

    monkeypatch.setattr(session_mod.Session, "from_bundle", classmethod(from_bundle))
    monkeypatch.delenv("DISPLAY", raising=False)
    args = _argv(argv, world)
    if verb == "run" and code != 2:
        args += ["--quiet", "--no-power"]
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        try:
            got = main(args)
        except SystemExit as exc:  # argparse: usage errors, --help
            got = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    assert got == code, f"exit {got}, expected {code}\nstderr: {err[-2000:]}\nstdout: {out[-1000:]}"
    if words is not None:
        words = words.format(**world)
        assert words in err or words in out, f"{words!r} not in the message:\n{err[-2000:]}{out[-1000:]}"
    if code and words is not None:  # one error line; run: a source or output failing mid-run ends the summary
        assert "error:" in err or "stopped by:" in out, err


def test_the_matrix_covers_every_verb():
    from edgevos.cli import COMMANDS

    assert {c[0] for c in CASES} - {"top"} == set(COMMANDS) - {"doctor"} and "doctor" in " ".join(c[0] for c in TOP)
    assert len(CASES) >= 200


# --- what a terminal shows: the installed command, in a subprocess (no torch is imported by these) ---
TERMINAL = [
    (["frobnicate"], 2, "invalid choice"),
    (["run", "test://", "--bundle", "{T}/nonexistent"], 1, "does not exist"),
    (["eval", "--davis", "{DAVIS}", "--results", "{RES}", "--out", "{T}/file/x"], 1, "is a file, so no directory"),
    (["build", "{T}/garbagebundle", "--register"], 1, "manifest.json is unreadable"),
    (["train", "gfrtm", "--out", "{T}/file/x"], 1, "Not a directory"),
]


@pytest.mark.parametrize("argv, code, words", TERMINAL, ids=[" ".join(t[0][:2]) for t in TERMINAL])
def test_the_command_prints_one_error_line(world, argv, code, words):
    args = [a.format(**world) for a in argv]
    r = subprocess.run([sys.executable, "-m", "edgevos", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == code and "Traceback" not in r.stderr, r.stderr
    assert words in r.stderr, r.stderr
    assert len([line for line in r.stderr.splitlines() if "error:" in line]) == 1, r.stderr


def test_file_system_errors_show_their_traceback_only_with_v(world, capsys):
    from edgevos.cli import main

    target = f"{world['T']}/file/x"
    assert main(["train", "gfrtm", "--out", target]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"Not a directory: '{target}'" in err
    assert main(["-v", "train", "gfrtm", "--out", target]) == 1
    err = capsys.readouterr().err
    assert "the file-system error came from here" in err and "Traceback" in err


WARN = r"""
import sys, warnings
import edgevos.doctor
def main(args):
    warnings.warn("the encoder fell back", RuntimeWarning)
    return 0
edgevos.doctor.main = main
from edgevos.cli import main as cli
sys.exit(cli(["doctor"]))
"""


def test_warnings_are_one_line_without_source_code():
    """A Python warning prints the line of code that raised it under the message, which reads
    like the start of a traceback; the CLI prints it as the logger does."""
    r = subprocess.run([sys.executable, "-c", WARN], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "warning: the encoder fell back\n", r.stderr


def test_exit_codes_are_documented():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Exit codes"):]
    section = section[:section.index("\n## ", 4)] if "\n## " in section[4:] else section
    for code in ("0", "1", "2", "129", "130", "143"):
        assert f"| {code} |" in section, code
