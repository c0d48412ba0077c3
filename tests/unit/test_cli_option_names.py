"""One meaning per option name: the renamed flags and their old spellings parse to the same setting, and
``--backend`` choices come from the backend registry."""

from __future__ import annotations

import pytest

from binsight.cli.main import build_parser, parse_command_line
from binsight.inference import backends


def parse(*argv: str):
    return parse_command_line(build_parser(), list(argv))


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit):
        parse(*argv, "--help")
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["cleanup", "--grace-period", "5"], "grace_period", 5.0),
        (["cleanup", "--timeout", "5"], "grace_period", 5.0),
        (["cleanup"], "grace_period", 20.0),
        (["endpoint", "delete", "x", "--grace-period", "3"], "grace_period", 3.0),
        (["endpoint", "delete", "x", "--timeout", "3"], "grace_period", 3.0),
        (["endpoint", "create", "x", "--model", "m", "--startup-timeout", "7"], "startup_timeout", 7.0),
        (["endpoint", "create", "x", "--model", "m", "--timeout", "7"], "startup_timeout", 7.0),
        (["endpoint", "create", "x", "--model", "m"], "startup_timeout", None),
        (["endpoint", "update", "x", "--model", "m", "--timeout", "8"], "startup_timeout", 8.0),
        (["tune", "--time-budget", "9"], "time_budget", 9.0),
        (["tune", "--timeout", "9"], "time_budget", 9.0),
        (["tune", "--workers", "2"], "workers", 2),
        (["tune", "--jobs", "2"], "workers", 2),
    ],
)
def test_new_and_old_spellings_set_the_same_option(argv, dest, value):
    assert getattr(parse(*argv), dest) == value


@pytest.mark.parametrize(
    ("argv", "shown", "hidden"),
    [
        (["cleanup"], "--grace-period S", "--timeout"),
        (["endpoint", "delete"], "--grace-period S", "--timeout"),
        (["endpoint", "create"], "--startup-timeout S", "--timeout"),
        (["tune"], "--time-budget S", "--jobs"),
    ],
)
def test_help_shows_only_the_current_name(capsys, argv, shown, hidden):
    text = help_text(capsys, *argv)
    assert shown in text and f"{hidden} " not in text


@pytest.mark.parametrize("command", [["predict"], ["serve"], ["endpoint", "create"], ["endpoint", "update"]])
def test_backend_choices_come_from_the_registry(capsys, monkeypatch, command):
    monkeypatch.setitem(backends._REGISTRY, "my-engine", "my_package.engine:Engine")
    text = help_text(capsys, *command)
    assert "{" + ",".join(backends.backend_names()) + "}" in text
    assert "onnx-int8" in text and "my-engine" in text
