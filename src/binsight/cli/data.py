"""``binsight data``: synth, fetch, split, stats. Each subcommand lives in ``cli/data_<name>.py``."""

from __future__ import annotations

import argparse
import importlib

SUBCOMMANDS = ["synth", "fetch", "split", "stats"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data",
        help="make, download, split and describe datasets",
        description="Datasets in ABID layout (bin-images/*.jpg + metadata/*.json): generate SynthBins, "
        "download ABID from S3, split into leak-free manifests, and plot statistics.",
    )
    data_sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"binsight.cli.data_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"binsight.cli.data_{name}":
                raise
            continue
        module.register(data_sub)
