"""The demo's bundle reuse."""
import pytest
def test_demo_reuses_a_bundle_only_when_it_was_exported_from_the_same_weights_config():
    """A weights update (here a target-model setting) must re-export, not reuse the stale bundle."""
    pytest.importorskip("torch")
    from edgevos.demo import _same_model
    from edgevos.models.weights import load_checkpoint

    cfg = dict(load_checkpoint("gfrtm", "default")["config"])
    cfg["input_size"] = [256, 448]  # the size is checked on its own
    assert _same_model(cfg, "default")
    assert not _same_model({**cfg, "proj_dim": 32}, "default")
    assert not _same_model({k: v for k, v in cfg.items() if k != "target_inputs"}, "default")
