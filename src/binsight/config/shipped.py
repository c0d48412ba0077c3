"""The configs shipped inside the package (``binsight/configs/*.yaml``), found by name from any directory.

``--config NAME`` (``demo``, ``abid``, ``tune-report`` …) and ``binsight cfg``/``copy-cfg`` use them; an existing
file path always wins over a shipped name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from binsight.config.loader import ConfigError

DEFAULT_PIPELINE = "demo"


def shipped_dir() -> Path:
    """The folder of shipped configs (a real folder: binsight is installed unzipped)."""
    return Path(str(resources.files("binsight") / "configs"))


def shipped_names() -> list[str]:
    return sorted(p.stem for p in shipped_dir().glob("*.yaml"))


def shipped_path(name: str) -> Path:
    """The shipped config ``name`` (with or without ``.yaml``), or a ConfigError listing the names."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = shipped_dir() / f"{stem}.yaml"
    if not path.is_file():
        raise ConfigError(f"no shipped config named {name!r}; shipped configs: {', '.join(shipped_names())}")
    return path


def resolve_config(path: str | Path) -> Path:
    """An existing file as given; otherwise a bare name (no folder part) of a shipped config."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if candidate.parent == Path(".") and candidate.suffix in ("", ".yaml"):
        try:
            return shipped_path(candidate.name)
        except ConfigError:
            pass
    raise ConfigError(
        f"config file {path} does not exist (shipped configs, usable by name: {', '.join(shipped_names())})"
    )


def summary(name: str, width: int = 90) -> str:
    """The first comment line of a shipped config, cut to ``width`` characters."""
    for line in shipped_path(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            text = line.lstrip("# ").strip()
            return text if len(text) <= width else text[: width - 1] + "…"
    return ""
