"""Continuing a pipeline run with the configuration it was started with.

A resumed run (``--resume``, ``--from``, ``--only`` on an existing run) is rebuilt from the run's own
``config.yaml``, never from today's default. ``key=value`` overrides given with it are applied on top, each one
logged; an override that would change the inputs of a finished stage that is not being re-run is refused, since
the files on disk would no longer match the recorded config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from binsight.config import ConfigError, PipelineConfig, from_dict, read_yaml, to_dict
from binsight.config.loader import apply_overrides, parse_override

log = logging.getLogger(__name__)

# The top-level config keys each stage reads. A stage missing here is taken to read every key.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "synth": ("data", "synth"),
    "split": ("data", "synth", "split"),
    "stats": ("data", "synth", "split"),
    "train": ("data", "train"),
    "evaluate": ("data", "train"),
    "tune": ("data", "tune"),
    "final": ("data", "tune", "train"),
    "ddp_train": ("data", "ddp"),
    "export": ("data", "tune", "train", "serve"),
    "deploy": ("serve",),
    "smoke": ("serve",),
    "cleanup": ("serve",),
}
FIXED_KEYS = ("name", "out", "stages")  # they identify the run itself


def resume_config(run_dir: Path, overrides: list[str], kept_done: list[str]) -> PipelineConfig:
    """The run's saved config with ``overrides`` applied; ``kept_done`` are finished stages not re-run."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml to resume from")
    saved = to_dict(from_dict(PipelineConfig, read_yaml(saved_path)))
    for text in overrides:
        path, value = parse_override(text)
        key = ".".join(path)
        old = _get(saved, path)
        if old == value:
            continue
        if path[0] in FIXED_KEYS:
            raise ConfigError(f"{key} cannot change when resuming {run_dir} (it was {old!r}); start a new run instead")
        touched = [s for s in kept_done if path[0] in STAGE_INPUTS.get(s, (path[0],))]
        if touched:
            raise ConfigError(
                f"{key}={value!r} contradicts finished stage(s) {', '.join(touched)} of {run_dir} "
                f"(recorded {key}={old!r}); re-run them with --from {touched[0]}, or start a new run"
            )
        log.info("resume: %s changed from %r to %r", key, old, value)
    return from_dict(PipelineConfig, apply_overrides(saved, overrides))


def _get(data: dict[str, Any], path: list[str]) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
