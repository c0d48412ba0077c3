"""EfficientNet-Lite0/1/2: our implementation with mapped weights reproduces the released models exactly."""

from __future__ import annotations

import pytest
import torch

from binsight.errors import BinsightError
from binsight.models import create_model
from binsight.models.lite import (
    LITE_MEAN,
    LITE_STD,
    LITE_VARIANTS,
    EfficientNetLite,
    SameConv2d,
    convert_lite_state_dict,
    lite_package_weights_path,
)

VARIANTS = sorted(LITE_VARIANTS)

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread: tests/conftest.py


def released(variant: str = "lite0") -> dict:
    return torch.load(lite_package_weights_path(variant), map_location="cpu", weights_only=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_key_mapping_covers_every_released_tensor(variant):
    state = released(variant)
    mapped = convert_lite_state_dict(state)
    own = EfficientNetLite(num_classes=1000, variant=variant).state_dict()
    assert len(state) == len(mapped) == len(own)
    assert mapped.keys() == own.keys()
    for key, value in own.items():
        assert mapped[key].shape == value.shape, key


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_bit_identical_to_efficientnet_lite_pytorch(variant):
    original_pkg = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="reference implementation (dev dependency efficientnet-lite-pytorch)"
    )
    weights_path = lite_package_weights_path(variant)
    original = original_pkg.EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=weights_path)
    ours = EfficientNetLite(num_classes=1000, variant=variant)
    ours.load_state_dict(convert_lite_state_dict(released(variant)))
    original.eval()
    ours.eval()
    torch.manual_seed(0)
    # The released size: the original bakes static SAME padding for it (224 / 240 / 260 px).
    size = LITE_VARIANTS[variant][2]
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = original(x)
        got = ours(x)
    assert expected.shape == got.shape == (2, 1000)
    assert torch.equal(got, expected), float((got - expected).abs().max())
    # And the binsight backbone (classifier removed) yields the features the original classifier sees.
    with torch.no_grad():
        feats = original._avg_pooling(original.extract_features(x)).flatten(1)
        model = create_model(f"efficientnet_{variant}", num_classes=5, weights="imagenet").eval()
        assert torch.equal(model.features(x), feats)
    assert model.default_cfg["input_size"] == size


def test_imagenet_weights_load_offline_and_preprocessing():
    release_state = released()
    model = create_model("efficientnet_lite0", num_classes=5, weights="imagenet")
    torch.testing.assert_close(model.backbone.stem[0].weight, release_state["_conv_stem.weight"])
    last_bn = model.backbone.blocks[15].project[1]
    torch.testing.assert_close(last_bn.running_var, release_state["_blocks.15._bn2.running_var"])
    assert model.feature_dim == 1280
    assert model.default_cfg["input_size"] == 224
    # (x - 127) / 128 on 0..255 pixels, expressed on [0, 1]
    assert model.default_cfg["mean"] == pytest.approx([127 / 255] * 3) == LITE_MEAN
    assert model.default_cfg["std"] == pytest.approx([128 / 255] * 3) == LITE_STD


def test_released_file_loads_as_a_weights_path():
    model = create_model("efficientnet_lite0", num_classes=5, weights=lite_package_weights_path())
    reference = create_model("efficientnet_lite0", num_classes=5, weights="imagenet")
    for key, value in reference.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value, msg=key)


def test_same_padding_matches_tensorflow_output_sizes():
    conv = SameConv2d(1, 1, kernel=3, stride=2)
    for size in (31, 32, 33, 224):
        assert conv(torch.zeros(1, 1, size, size)).shape[-1] == -(-size // 2)
    # Stride 2 on an even input pads only bottom/right (TF), so the top-left pixel lines up with the kernel centre+1.
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left tap of each window
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(conv(x)[0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]))


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_scaled_variants_load_their_own_weights(variant):
    model = create_model(f"efficientnet_{variant}", num_classes=5, weights="imagenet")
    state = released(variant)
    # Lite2 is wider (stage 6: 192 → 208 channels); Lite1 only deeper (21 blocks instead of 16).
    torch.testing.assert_close(model.backbone.blocks[20].project[0].weight, state["_blocks.20._project_conv.weight"])
    assert len(model.backbone.blocks) == 21
    # Lite0's weights do not fit a Lite1/2 and say so.
    with pytest.raises(BinsightError, match="does not fit"):
        create_model(f"efficientnet_{variant}", num_classes=5, weights=lite_package_weights_path("lite0"))


def test_unknown_keys_are_rejected():
    with pytest.raises(BinsightError, match="unexpected key"):
        convert_lite_state_dict({"features.0.weight": torch.zeros(1)})


def test_train_mode_forward_with_stochastic_depth_and_small_input():
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=5, head="ordinal")
    model.train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 4)
    out.sum().backward()
    assert model.backbone.stem[0].weight.grad is not None


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the serve extra")
    pytest.importorskip("onnx", reason="ONNX export needs the serve extra")
    model = create_model("efficientnet_lite0", num_classes=5, weights="imagenet").eval()
    path = tmp_path / "lite0.onnx"
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 64, 64),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    x = torch.randn(3, 3, 64, 64)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (3, 5)
    assert abs(got - expected).max() < 1e-4
