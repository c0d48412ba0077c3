"""An architecture registered with ``@register_model`` is accepted by the config and trained like a built-in one."""

from __future__ import annotations

import pytest
import torch

from binsight.config import ConfigError, TrainConfig, TuneConfig, load_config
from binsight.models import register_model
from binsight.models.registry import BackboneSpec
from binsight.training.job import run_training_job
from tests.integration.train_helpers import make_split

pytestmark = pytest.mark.usefixtures("one_thread")


@register_model("_test_pool_net")
def _test_pool_net() -> BackboneSpec:
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1))
    return BackboneSpec(module, 4, {"mean": [0.5] * 3, "std": [0.5] * 3, "input_size": 32})


def test_a_registered_model_is_trained_through_the_config(tmp_path):
    split = make_split(tmp_path / "data", n_train=6, n_val=3, n_test=0)
    overrides = [f"data={split}", "model=_test_pool_net", "weights=none", "img_size=16", "epochs=1", "augment=none"]
    cfg = load_config(TrainConfig, None, [*overrides, f"cache_dir={tmp_path / 'cache'}"])
    result = run_training_job(cfg, out=tmp_path / "run", handle_signals=False)
    assert result is not None and (result.artifact_dir / "model.json").is_file()
    assert '"architecture": "_test_pool_net"' in (result.artifact_dir / "model.json").read_text()


def test_unregistered_models_are_refused_in_train_and_tune_configs():
    with pytest.raises(
        ConfigError, match="model: 'no_such_net' is not allowed; expected one of 'efficientnet_lite0', "
    ):
        load_config(TrainConfig, None, ["model=no_such_net"])
    with pytest.raises(ConfigError, match="no_such_net"):
        load_config(TuneConfig, None, ["space.model=[_test_pool_net, no_such_net]"])
    assert load_config(TuneConfig, None, ["space.model=[_test_pool_net, tiny_cnn]"]).space.model[0] == "_test_pool_net"
