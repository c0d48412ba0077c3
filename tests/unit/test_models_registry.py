"""Registry, BinCounter and create_model: every architecture builds with both heads and gives valid outputs."""

from __future__ import annotations

import pytest
import torch

from binsight.errors import BinsightError
from binsight.models import BinCounter, create_model, list_models, register_model
from binsight.models.registry import BackboneSpec

ALL_MODELS = [
    "convnext_tiny",
    "efficientnet_b0",
    "efficientnet_lite0",
    "mobilenet_v3_large",
    "resnet18",
    "resnet34",
    "resnet50",
    "tiny_cnn",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread: tests/conftest.py


def test_list_models_names_the_builtin_architectures():
    assert set(ALL_MODELS) <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_builds_with_both_heads(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    for head, width in (("softmax", 5), ("ordinal", 4)):
        model = create_model(name, num_classes=5, head=head).eval()
        assert isinstance(model, BinCounter)
        assert (model.arch, model.head_type, model.num_classes) == (name, head, 5)
        with torch.no_grad():
            feats = model.features(x)
            out = model(x)
        assert feats.shape == (2, model.feature_dim)
        assert out.shape == (2, width) == (2, model.num_outputs)
        torch.testing.assert_close(model.forward_head(feats), out)
        probs = model.probabilities(out)
        assert probs.shape == (2, 5)
        assert (probs >= 0).all()
        torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_default_cfg_holds_preprocessing(name):
    cfg = create_model(name, num_classes=3).default_cfg
    assert len(cfg["mean"]) == 3 and len(cfg["std"]) == 3
    assert all(s > 0 for s in cfg["std"])
    assert isinstance(cfg["input_size"], int) and cfg["input_size"] >= 32


def test_tiny_cnn_is_small_and_seeded_by_caller():
    torch.manual_seed(1)
    a = create_model("tiny_cnn", num_classes=5)
    torch.manual_seed(1)
    b = create_model("tiny_cnn", num_classes=5)
    torch.manual_seed(2)
    c = create_model("tiny_cnn", num_classes=5)
    n_params = sum(p.numel() for p in a.parameters())
    assert 10_000 < n_params < 30_000
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, msg=key)
    assert not torch.equal(a.head.fc.weight, c.head.fc.weight)


def test_backbone_is_classifier_free():
    model = create_model("resnet18", num_classes=5)
    assert isinstance(model.backbone.fc, torch.nn.Identity)
    assert model.feature_dim == 512
    assert create_model("resnet50", num_classes=5).feature_dim == 2048


def test_unknown_model_lists_names():
    with pytest.raises(BinsightError) as info:
        create_model("resnet9000", num_classes=5)
    message = str(info.value)
    assert "resnet9000" in message
    for name in ALL_MODELS:
        assert name in message


def test_unknown_head_and_too_few_classes_are_errors():
    with pytest.raises(BinsightError, match="softmax, ordinal"):
        create_model("tiny_cnn", num_classes=5, head="poisson")
    with pytest.raises(BinsightError, match="num_classes"):
        create_model("tiny_cnn", num_classes=1)


def test_register_model_adds_a_new_architecture():
    @register_model("_test_linear_net")
    def _test_linear_net() -> BackboneSpec:
        module = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1))
        return BackboneSpec(module, 3, {"mean": [0.5] * 3, "std": [0.5] * 3, "input_size": 32})

    assert "_test_linear_net" in list_models()
    model = create_model("_test_linear_net", num_classes=4, head="ordinal")
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="already registered"):
        register_model("_test_linear_net")(lambda: None)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0", "tiny_cnn"])
def test_models_pickle_and_deepcopy(name):
    import copy
    import io

    model = create_model(name, num_classes=5, head="ordinal").eval()
    buffer = io.BytesIO()
    torch.save(model, buffer)  # whole-module pickling: no closures or lambdas inside
    clone = copy.deepcopy(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x))
    assert buffer.tell() > 0
