"""In-process pieces of data-parallel training: BatchNorm conversion, validation shards, hyperparameter flags."""

from __future__ import annotations

import pytest
import torch

from binsight.training.distributed import Dist, dist_from_env, shard_bounds
from binsight.training.syncbn import GlobalBatchNorm2d, convert_batchnorm

pytestmark = pytest.mark.ddp


def test_converted_batchnorm_keeps_the_state_dict_and_is_plain_batchnorm_without_a_group():
    from binsight.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_batchnorm(create_model("tiny_cnn", 3), torch.device("cpu"))
    converted.load_state_dict(reference)
    assert any(isinstance(m, GlobalBatchNorm2d) for m in converted.modules())
    assert list(converted.state_dict()) == list(reference)
    x = torch.rand(4, 3, 32, 32)
    model.train(), converted.train()
    torch.testing.assert_close(converted(x), model(x))
    key = "backbone.1.running_var"
    torch.testing.assert_close(converted.state_dict()[key], model.state_dict()[key])


@pytest.mark.parametrize("n,world", [(9, 2), (2, 4), (0, 3), (10, 5)])
def test_validation_shards_cover_every_item_once(n, world):
    items = [i for r in range(world) for i in range(*shard_bounds(n, Dist(r, world, r)))]
    assert items == list(range(n))


def test_rank_comes_from_the_launcher_environment():
    assert dist_from_env({}) == Dist()
    assert dist_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Dist(3, 4, 1)
    from binsight.errors import BinsightError

    with pytest.raises(BinsightError, match="outside"):
        dist_from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_sagemaker_style_hyperparameters_become_overrides():
    from binsight.cli.main import build_parser
    from binsight.cli.train import hyperparameter_overrides

    args = build_parser().parse_args(
        ["train", "--batch-size", "4", "--model", '"tiny_cnn"', "--deterministic", "True", "--lr=0.01"]
        + ["--local_rank", "1", "epochs=2"]
    )
    assert hyperparameter_overrides(args) == ["batch_size=4", "deterministic=True", "lr=0.01", "model=tiny_cnn"]
    assert args.overrides == ["epochs=2"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--epoch", "3"])  # no prefix guessing
