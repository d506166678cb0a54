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


def test_demo_reuses_a_bundle_only_when_it_was_exported_from_the_same_weights_file(tmp_path):
    """New weights with an unchanged config (a retrained network) must re-export too: the demo keeps
    the sha256 of the file it exported from beside the bundle."""
    from edgevos.bundle import sha256
    from edgevos.demo import _same_weights_file
    from edgevos.models.weights import resolve

    assert not _same_weights_file(tmp_path, "default")  # no record: an older bundle is re-exported
    (tmp_path / "bundle.weights.sha256").write_text(sha256(resolve("gfrtm", "default")) + "\n")
    assert _same_weights_file(tmp_path, "default")
    (tmp_path / "bundle.weights.sha256").write_text("0" * 64 + "\n")
    assert not _same_weights_file(tmp_path, "default")
