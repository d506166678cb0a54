"""The shipped G-FRTM-fast weights load offline and segment well above chance.

A broken or missing checkpoint must not land: the quick start runs on it.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgevos.models.weights import resolve  # noqa: E402


def _session(tau=1.0):
    from edgevos.models.registry import get_family
    from edgevos.models.weights import load_checkpoint
    from edgevos.runtime.session import Session

    torch.set_num_threads(1)
    size = tuple(load_checkpoint("gfrtm", "default")["config"]["input_size"])
    return Session.from_model(get_family("gfrtm").build(weights="default", input_size=size), tau=tau)


def test_default_weights_are_shipped_small_and_safe():
    path = resolve("gfrtm", "default")
    assert path.stat().st_size < 20e6  # fp16 storage, backbone included
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["family"] == "gfrtm" and "train_config" in ckpt["meta"]
    heldout = set(ckpt["meta"]["train_config"]["heldout"])
    assert heldout and not heldout & set(ckpt["meta"]["sequences"])  # never trained on held-out
    # composite clips (``composite-NNN-scene+other``) are made of training sequences only
    parts = {p for n in ckpt["meta"]["sequences"] if n.startswith("composite-") for p in n.split("-", 2)[2].split("+")}
    assert not heldout & parts


def test_default_weights_segment_a_generated_clip():
    from edgevos.data import SyntheticConfig, make_sequence
    from edgevos.metrics import evaluate_sequence

    seq = make_sequence(SyntheticConfig(height=240, width=432, num_frames=16, num_objects=2, seed=11, speed=2.5))
    s = _session()
    preds = [s.start(seq.frame(0), seq.mask(0)).mask] + [s.step(seq.frame(i)).mask for i in range(1, len(seq))]
    ev = evaluate_sequence([seq.mask(i) for i in range(len(seq))], preds)
    j = np.mean([v["J-Mean"] for v in ev["stats"].values()])
    assert j >= 0.5, f"J = {j:.3f} on a generated clip"


def test_default_weights_segment_a_heldout_davis_sequence(davis_root):
    from edgevos.data import DavisDataset
    from edgevos.metrics import evaluate_sequence

    seq = DavisDataset(davis_root)["bear"]  # held out from training
    n = 16
    s = _session()
    preds = [s.start(seq.frame(0), seq.mask(0)).mask] + [s.step(seq.frame(i)).mask for i in range(1, n)]
    ev = evaluate_sequence([seq.mask(i) for i in range(n)], preds)
    j = ev["stats"][1]["J-Mean"]
    assert j >= 0.5, f"J = {j:.3f} on held-out 'bear'"


@pytest.mark.parametrize("name", ["default", "small"])
def test_shipped_slowfast_weights_segment_a_heldout_davis_sequence(davis_root, name):
    from edgevos.data import DavisDataset
    from edgevos.metrics import evaluate_sequence
    from edgevos.models.registry import get_family
    from edgevos.models.weights import load_checkpoint
    from edgevos.runtime.session import Session

    ckpt = load_checkpoint("slowfast", name)
    assert ckpt["config"]["preset"] == "3-7"
    assert not set(ckpt["meta"]["train_config"]["heldout"]) & set(ckpt["meta"]["sequences"])
    torch.set_num_threads(1)
    model = get_family("slowfast").build(weights=name, input_size=tuple(ckpt["config"]["input_size"]))
    s = Session.from_model(model, tau=1.0, family="slowfast")
    seq = DavisDataset(davis_root)["bear"]  # held out from training
    n = 16
    preds = [s.start(seq.frame(0), seq.mask(0)).mask] + [s.step(seq.frame(i)).mask for i in range(1, n)]
    j = evaluate_sequence([seq.mask(i) for i in range(n)], preds)["stats"][1]["J-Mean"]
    assert j >= 0.5, f"J = {j:.3f} on held-out 'bear' ({name})"


def test_shipped_slowfast_sizes():
    """``default`` is the accurate one, ``small`` the cheap one (the same lineage at 128x224)."""
    from edgevos.models.weights import load_checkpoint

    sizes = {n: tuple(load_checkpoint("slowfast", n)["config"]["input_size"]) for n in ("default", "small")}
    assert sizes["small"] == (128, 224) and sizes["default"][0] * sizes["default"][1] > 128 * 224


def test_builders_default_to_the_size_the_weights_were_trained_at():
    pytest.importorskip("torch")
    from edgevos.models.registry import get_family
    from edgevos.models.weights import load_checkpoint

    for fam in ("gfrtm", "slowfast"):
        trained = tuple(load_checkpoint(fam, "default")["config"]["input_size"])
        assert tuple(get_family(fam).build(weights="default").config.input_size) == trained
        assert tuple(get_family(fam).build(weights="default", input_size=(64, 128)).config.input_size) == (64, 128)
