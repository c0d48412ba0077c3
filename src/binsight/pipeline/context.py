"""What a pipeline stage is: a named function from a :class:`StageContext` (the config, the run directory and
earlier stages' outputs) to its outputs and the :class:`Section` it adds to the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binsight.config import PipelineConfig
from binsight.errors import BinsightError


@dataclass
class Section:
    """What a stage adds to the report: prose/HTML, figures (PNG paths), tables and headline numbers."""

    title: str
    summary: str = ""
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, path relative to the run dir)
    tables: list[dict[str, Any]] = field(default_factory=list)  # {"caption", "columns", "rows"}
    html: str = ""  # extra trusted HTML made by binsight itself (never user input)
    skipped: str = ""  # why the stage had nothing to do (recorded as status "skipped", its outputs still kept)


@dataclass
class StageContext:
    """Everything a stage needs: the config, the run directory and what earlier stages produced."""

    cfg: PipelineConfig
    run_dir: Path
    outputs: dict[str, dict[str, Any]]
    # True when the user asked for this stage again (--from/--only): start it over. False on a first run or
    # a --resume after an interruption: a stage may then continue its own checkpoints.
    restart: bool = False

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    def rel(self, path: str | Path) -> str:
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.run_dir.resolve()))
        except ValueError:
            return str(path)

    def require(self, stage: str, key: str) -> Any:
        """A value an earlier stage produced; a clear error when that stage has not run."""
        value = self.outputs.get(stage, {}).get(key)
        if value is None:
            raise BinsightError(f"stage {stage!r} has not produced {key!r} yet: run it first (e.g. --from {stage})")
        return value


# What a stage returns: its outputs for later stages (JSON-serialisable) and its report section.
StageResult = tuple[dict[str, Any], Section]
StageFn = Callable[[StageContext], StageResult]


@dataclass
class Stage:
    name: str
    fn: StageFn
    help: str
