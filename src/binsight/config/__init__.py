"""Configuration schemas and loading (see :mod:`binsight.config.loader`)."""

from binsight.config.loader import (
    ConfigError,
    apply_overrides,
    dump_yaml,
    from_dict,
    load_config,
    read_yaml,
    to_dict,
)
from binsight.config.schemas import (
    PipelineConfig,
    SearchSpace,
    ServeConfig,
    SplitConfig,
    SynthConfig,
    TrainConfig,
    TuneConfig,
)

__all__ = [
    "ConfigError",
    "PipelineConfig",
    "SearchSpace",
    "ServeConfig",
    "SplitConfig",
    "SynthConfig",
    "TrainConfig",
    "TuneConfig",
    "apply_overrides",
    "dump_yaml",
    "from_dict",
    "load_config",
    "read_yaml",
    "to_dict",
]
