"""The search space: :class:`~binsight.config.schemas.SearchSpace` entries turned into Optuna suggestions.

Parameter names are :class:`~binsight.config.schemas.TrainConfig` keys, so a trial's ``params`` merge
straight into a training config (``best.yaml`` is exactly that merge).
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from binsight.config.schemas import SearchSpace, TrainConfig

if TYPE_CHECKING:
    import optuna

RANGE_KEYS = {"lr": "log", "weight_decay": "log", "patience": "int"}
CHOICE_KEYS = ("batch_size", "freeze_backbone", "model", "loss", "augment", "img_size")


def tuned_keys(space: SearchSpace) -> list[str]:
    """Keys the study searches over (two or more values); the others are fixed or untouched."""
    return [f.name for f in fields(space) if len(getattr(space, f.name)) >= 2]


def fixed_values(space: SearchSpace) -> dict[str, Any]:
    """Keys given exactly one value: every trial uses it, and it goes into ``best.yaml``."""
    return {f.name: getattr(space, f.name)[0] for f in fields(space) if len(getattr(space, f.name)) == 1}


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Ask ``trial`` (an ``optuna.Trial``) for a value of every tuned key.

    Returns:
        The suggested values by TrainConfig key (fixed keys not included).
    """
    params: dict[str, Any] = {}
    for key in tuned_keys(space):
        values = getattr(space, key)
        kind = RANGE_KEYS.get(key)
        if kind == "log":
            params[key] = trial.suggest_float(key, float(values[0]), float(values[1]), log=True)
        elif kind == "int":
            params[key] = trial.suggest_int(key, int(values[0]), int(values[1]))
        else:
            params[key] = trial.suggest_categorical(key, list(values))
    return params


def apply_params(base: TrainConfig, space: SearchSpace, params: dict[str, Any], **extra: Any) -> TrainConfig:
    """The training config of a trial: ``base``, then the space's fixed values, then ``params``, then ``extra``.

    A ``loss`` of ``ordinal`` needs the ordinal head and any other loss the softmax head, so the head follows
    the loss whenever the loss comes from the space.

    Raises:
        ConfigError: the merged config is invalid (the message names the key).
    """
    from binsight.config.loader import from_dict, to_dict

    values = {**to_dict(base), **fixed_values(space), **params, **extra}
    if "loss" in params or "loss" in fixed_values(space):
        values["head"] = "ordinal" if values["loss"] == "ordinal" else "softmax"
    return from_dict(TrainConfig, values)


def space_dict(space: SearchSpace) -> dict[str, Any]:
    """Plain-data form of a space, for the study's attributes and comparisons."""
    return {f.name: list(getattr(space, f.name)) for f in fields(space)}


def distribution_names(space: SearchSpace) -> dict[str, str]:
    """A readable description of each tuned key (``log [1e-05, 0.003]``, ``choice [16, 32, 64]``, …)."""
    out = {}
    for key in tuned_keys(space):
        kind = RANGE_KEYS.get(key, "choice")
        out[key] = f"{kind} {getattr(space, key)}"
    return out
