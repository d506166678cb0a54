"""FPS budget mode: tau steered live to hold a frame rate with the least reuse."""
import numpy as np
import pytest

from edgevos.errors import InputError
from edgevos.runtime.budget import FpsGovernor


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _simulate(target, n=900, computed_ms=10.0, reused_ms=3.0, seed=0):
    """A stream where a frame costs 10 ms computed and 3 ms reused, and the gate's P is uniform."""
    clock, rng = _Clock(), np.random.default_rng(seed)
    gov = FpsGovernor(target, clock=clock)
    for _ in range(n):
        reused = rng.random() >= gov.tau if gov.tau < 1 else False
        clock.t += (reused_ms if reused else computed_ms) / 1e3
        gov.observe(reused)
    return gov


@pytest.mark.parametrize("target", [110.0, 150.0, 180.0])
def test_holds_a_reachable_target_within_5_percent(target):
    gov = _simulate(target)
    tail = gov.history[300:]
    reuse = np.mean([h.reused for h in tail])
    fps = 1e3 / (10.0 * (1 - reuse) + 3.0 * reuse)  # the steady-state rate those decisions give
    assert abs(fps - target) / target < 0.05
    s = gov.summary()
    assert abs(s["achieved_fps"] - target) / target < 0.05 and 0 < s["reuse_rate"] < 1


def test_least_reuse_when_the_model_is_fast_enough_and_tau_min_when_it_is_not():
    slow_target = _simulate(50.0)  # 100 FPS without any reuse
    assert slow_target.tau == 1.0 and slow_target.summary()["reuse_rate"] == 0.0
    fast_target = _simulate(1000.0)  # unreachable: as much reuse as tau_min allows
    assert fast_target.tau == fast_target.tau_min


def test_bad_targets_are_refused():
    with pytest.raises(InputError, match="positive"):
        FpsGovernor(0)
    with pytest.raises(InputError, match="tau range"):
        FpsGovernor(30, tau_min=0.9, tau_max=0.5)


def test_session_steers_tau_on_a_real_clip(videos_dir):
    torch = pytest.importorskip("torch")  # noqa: F841
    import cv2

    from edgevos.models.registry import get_family
    from edgevos.runtime.session import Session

    cap = cv2.VideoCapture(str(videos_dir / "sam2_01_dog.mp4"))
    frames = []
    while len(frames) < 14:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(f[..., ::-1]))
    assert len(frames) == 14
    h, w = frames[0].shape[:2]
    mask = np.zeros((h, w), np.uint8)
    mask[375:555, 450:705] = 1  # the dog's box
    model = get_family("gfrtm").build(weights="default")
    for target, expect in ((1e6, "down"), (1e-3, "one")):
        s = Session.from_model(model, num_augmentations=0)
        s.target_fps = target
        s.start(frames[0], mask)
        for f in frames[1:]:
            s.step(f)
        taus = [h.tau for h in s.governor.history]
        if expect == "down":  # unreachable: tau falls every frame until tau_min
            assert taus[-1] < taus[1] and all(b <= a for a, b in zip(taus, taus[1:]))
        else:  # any model beats one frame in 1000 s: never reuse
            assert set(taus) == {1.0} and s.governor.summary()["reuse_rate"] == 0.0


def test_run_reports_the_budget_and_the_cli_takes_target_fps():
    pytest.importorskip("torch")
    from edgevos.models.registry import get_family
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.session import Session
    from edgevos.runtime.sources import open_source
    from edgevos.cli import build_parser

    s = Session.from_model(get_family("gfrtm").build(weights="default"), num_augmentations=0)
    s.target_fps = 1e6  # unreachable: tau goes down every frame
    summary = run_pipeline(open_source("test://?frames=10&size=96x160"), [], s, warmup=2)
    b = summary.as_dict()["budget"]
    assert b["target_fps"] == 1e6 and b["achieved_fps"] > 0 and b["tau_min_seen"] < 1.0
    assert "FPS budget" in summary.table()
    args = build_parser().parse_args(["run", "test://", "--bundle", "B", "--target-fps", "25"])
    assert args.target_fps == 25.0
