"""``binsight pretrain``: build (or find) the SynthBins start of a training config ahead of its runs."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  binsight pretrain --config abid                  # the start configs/abid.yaml trains from
  binsight pretrain --config abid img_size=288     # another input size is another start

A run with synth_pretrain > 0 builds its start by itself when the cache lacks it; this command does it ahead of
time: before a multi-machine job started by an outside torchrun (its workers cannot build it), or to have the
~7-11 CPU minutes behind you. The start depends on model, weights, head, loss, img_size, resize, amp and the two
synth_pretrain keys only; `binsight cache info --kind pretrain` lists those built, `cache clear` removes them.
Exit codes: 0 built or found, 1 error, 2 config error, 3 stopped with the build's checkpoint kept (run again)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from binsight.cli.common import add_config_args

    parser = sub.add_parser(
        "pretrain",
        help="build the SynthBins start of a training config (synth_pretrain)",
        description="Train the config's weights for synth_pretrain epochs on generated SynthBins photos and keep "
        "the result in the cache, where every run of that config (and of any config with the same network and "
        "input) starts from it. Prints the weights file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(parser)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from binsight.cli.common import load_stage_config
    from binsight.config import ConfigError
    from binsight.config.schemas import TrainConfig
    from binsight.training.synthstart import start_info, synth_start

    cfg = load_stage_config(TrainConfig, args)
    if cfg.synth_pretrain < 1:
        raise ConfigError("synth_pretrain is 0 in this config, so it has no SynthBins start: add synth_pretrain=3")
    path = synth_start(cfg)
    meta = start_info(path)
    print(f"SynthBins start: {path}")
    print(
        f"{meta['model']} at {meta['img_size']} px, {meta['epochs']} epochs on {meta['images']} generated photos: "
        f"val macro-F1 {meta['val_macro_f1']:.4f} on generated photos; built {meta['built_at']} "
        f"in {meta['build_seconds'] / 60:.1f} min"
    )
    return 0
