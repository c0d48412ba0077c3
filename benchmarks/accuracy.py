"""Accuracy benchmark: binsight's recipe vs the capstone report's recipe, trained and tested on one fixed split.

    .venv/bin/python benchmarks/accuracy.py [--dataset abid|synth] [--recipes seed-baseline,abid] [--epochs N]
                                            [--set key=value ...] [--threads 2] [--cv [K]] [--folds 0,1]

``--dataset abid`` (default) splits ``../shared/abid-sample/labels.csv`` once, stratified 80/10/10 with seed 42
(``binsight.data.split.split_dataset``), into ``$BINSIGHT_BENCH_DIR/abid-split`` (default
``/tmp/binsight-bench``; never inside the repository). ``--dataset synth`` generates SynthBins with the
report's 10,441 images and class mix (seed 0) and splits them with val 0.09968 / test 0.10052, which gives
the report's val and test sizes (1,041 / 1,049; train gets 8,351, the report's 8,348 plus the 3 images its
own totals leave unaccounted for).

Every recipe (``configs/<name>.yaml`` or a YAML path) is trained with ``binsight.training.run.train`` on the
train split, early-stopped on val, and evaluated on the test split with
``binsight.evaluation.evaluate.evaluate_run`` (temperature fitted on val; accuracy and F1 do not depend on
it). Results go to ``benchmarks/results/accuracy_<dataset>.json`` and a table is printed.

``--cv K`` (``--cv`` alone: 5) cross-validates instead: the fixed split's train + val rows are dealt into K
stratified folds, leak-free by sha256 (``binsight.data.split.write_kfold``, seed 0, written once to
``$BINSIGHT_BENCH_DIR/<dataset>-cv<K>/fold<i>``). For fold i every recipe is trained with the real trainer on
the other folds (less an inner val part, 10 % per class, for early stopping, temperature and decision
thresholds) and scored on fold i by ``evaluate_run``; the fixed test split is not used. The report gives mean
± std over folds of accuracy, macro-F1, per-class F1, off-by-one, RMSE and ECE, and the CPU minutes (process
CPU time, all threads) of training one fold. ``--folds 0,2`` runs only some folds (a screening budget; the
entry says which). Results go to ``benchmarks/results/accuracy_<dataset>_cv<K>.json``.

``--cv K --ensemble`` trains nothing: it takes the K fold models a ``--cv K`` run left of each recipe and scores
them on the fixed split's test rows (which no fold ever saw), each alone and averaged as one ensemble artifact
(``binsight.inference.ensemble``: raw outputs averaged in the Predictor), with and without flip TTA. The
ensemble's temperature and decision offsets are the means of its members' own (each fitted on its inner val),
so nothing is fitted on rows a member trained on. Results:
``benchmarks/results/accuracy_<dataset>_cv<K>_ensemble.json``. ``--cv K --plot PNG [--also JSON]`` draws the
accuracy-vs-CPU-minutes curve of the CV results (docs/recipes.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from binsight.utils.cpu import cpu_seconds  # noqa: E402
from machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ABID_SAMPLE = REPO.parent / "shared" / "abid-sample"
SYNTH_N = 10_441
SYNTH_SPLIT = (0.09968, 0.10052)  # → 8,351 / 1,041 / 1,049 with the report's class mix
COLUMNS = [
    ("accuracy", "acc"),
    ("macro_f1", "macro-F1"),
    ("macro_precision", "macro-P"),
    ("macro_recall", "macro-R"),
    ("rmse", "RMSE"),
    ("off_by_one", "off-by-1"),
    ("ece", "ECE"),
]


def bench_dir() -> Path:
    """Where splits, caches and runs go: ``$BINSIGHT_BENCH_DIR`` or ``/tmp/binsight-bench``."""
    return Path(os.environ.get("BINSIGHT_BENCH_DIR", "/tmp/binsight-bench"))


def make_split(dataset: str, root: Path, synth_n: int = SYNTH_N) -> tuple[Path, dict]:
    """The benchmark's fixed split folder for ``dataset`` (built once, then reused).

    Returns:
        ``(split_dir, summary)`` where ``summary`` is ``split_summary.json``.
    """
    from binsight.config.schemas import SplitConfig, SynthConfig
    from binsight.data.split import split_dataset

    if dataset == "abid":
        src, out, cfg = ABID_SAMPLE / "labels.csv", root / "abid-split", SplitConfig(seed=42, val=0.1, test=0.1)
        if not src.is_file():
            raise SystemExit(f"{src} is missing: the ABID sample lives in ../shared/abid-sample next to the repo")
    else:
        from binsight.data.synth import generate

        src = root / f"synth-{synth_n}"
        if not (src / "synth.json").is_file():
            print(f"generating {synth_n} SynthBins images into {src} ...", flush=True)
            generate(src, SynthConfig(n=synth_n, seed=0, mix="udacity"), show_progress=False, overwrite=True)
        out, cfg = root / f"synth-{synth_n}-split", SplitConfig(seed=42, val=SYNTH_SPLIT[0], test=SYNTH_SPLIT[1])
    summary_file = out / "split_summary.json"
    if not summary_file.is_file():
        split_dataset(src, out, cfg, show_progress=False)
    return out, json.loads(summary_file.read_text())


def recipe_path(name: str) -> Path:
    """``configs/<name>.yaml`` for a bare name, else the path itself."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else REPO / "configs" / f"{name}.yaml"


def recipe_run_dir(root: Path, dataset: str, recipe: str, tag: str = "") -> Path:
    """Where the benchmark trains ``recipe`` (``tag``: ``fold_tag`` for a CV fold, "" for the fixed split)."""
    return root / "runs" / f"accuracy-{dataset}{tag}" / recipe_path(recipe).stem


def fold_tag(k: int, fold: int) -> str:
    """The run-folder suffix of fold ``fold`` of a ``--cv k`` run."""
    return f"-cv{k}-f{fold}"


def run_recipe(
    recipe: str,
    split_dir: Path,
    root: Path,
    dataset: str,
    overrides: list[str],
    threads: int,
    tag: str = "",
    backend: str = "torch",
) -> dict:
    """Train ``recipe`` on ``split_dir`` and evaluate it on the test split with the Predictor ``backend``
    (``torch``: the precision policy's choice for serving); returns the result entry."""
    import shutil

    from binsight.config.loader import load_config
    from binsight.config.schemas import TrainConfig
    from binsight.evaluation.evaluate import evaluate_run
    from binsight.training.run import train

    path = recipe_path(recipe)
    cfg = load_config(TrainConfig, path, overrides)
    cfg = replace(cfg, data=str(split_dir), cache_dir=str(root / "cache"))
    run_dir = recipe_run_dir(root, dataset, recipe, tag)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a benchmark run always trains from scratch
    start = synth_start_entry(cfg)  # a one-time cost, kept out of the recipe's per-fold training time
    load_before = os.getloadavg()[0]
    t0, cpu0 = time.monotonic(), cpu_seconds()
    result = train(cfg, out=run_dir, handle_signals=False)
    train_seconds, train_cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    t1 = time.monotonic()
    metrics = evaluate_run(run_dir, split="test", threads=threads, backend=backend)
    eval_seconds = time.monotonic() - t1
    entry = {
        "recipe": path.stem,
        "config": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "overrides": overrides,
        "model": cfg.model,
        "img_size": cfg.img_size,
        "resize": cfg.resize,
        "epochs_planned": cfg.epochs,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "val_macro_f1": result.best_metrics["macro_f1"],
        "val_accuracy": result.best_metrics["accuracy"],
        "test": {key: metrics[key] for key, _ in COLUMNS},
        "test_n": metrics["n"],
        "test_per_class_f1": {label: round(v["f1"], 4) for label, v in metrics["per_class"].items()},
        "test_confusion_matrix": metrics["confusion_matrix"],
        "temperature": metrics["temperature"],
        "eval_backend": backend,
        "eval_precision": metrics.get("precision"),
        "ece_before": metrics["ece_before"],
        "train_seconds": round(train_seconds, 1),
        "train_cpu_minutes": round(train_cpu / 60, 2),
        "eval_seconds": round(eval_seconds, 1),
        "seconds_per_epoch": round(train_seconds / max(1, len(result.history)), 1),
        "load_avg_1min_before": round(load_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "history": result.history,
        "run_dir": str(run_dir),
    }
    if start is not None:
        entry["synth_start"] = start
    return entry


def synth_start_entry(cfg) -> dict | None:
    """Build (or find) ``cfg``'s SynthBins start; what it is and what building it cost, once."""
    from binsight.training.synthstart import start_info, synth_start

    if not cfg.synth_pretrain:
        return None
    path = synth_start(cfg)
    meta = start_info(path)
    return {
        "weights": str(path),
        "sha256": meta["sha256"],
        "build_cpu_minutes_once": round(meta["build_cpu_seconds"] / 60, 2),
        "synthetic_val_macro_f1": meta["val_macro_f1"],
    }


def mean_std(values: list[float]) -> dict[str, float]:
    """``{"mean", "std"}`` (sample std; 0 for one value), rounded to 4 digits."""
    import statistics

    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
    }


CV_KEYS = ("accuracy", "macro_f1", "off_by_one", "rmse", "ece")


def run_cv(recipe: str, fold_dirs: list[Path], folds: list[int], root: Path, dataset: str, args, overrides) -> dict:
    """Train and score ``recipe`` on each requested fold; returns its CV entry (per fold and mean ± std)."""
    per_fold = []
    for i in folds:
        print(f"== {recipe} fold {i} ({fold_dirs[i]})", flush=True)
        e = run_recipe(
            recipe, fold_dirs[i], root, dataset, overrides, args.threads, fold_tag(len(fold_dirs), i), args.backend
        )
        e["fold"] = i
        per_fold.append(e)
    return summarise_cv(per_fold, overrides, len(fold_dirs))


def summarise_cv(per_fold: list[dict], overrides: list[str], k: int) -> dict:
    """One recipe's CV entry from its per-fold entries: mean ± std over the folds run."""
    per_fold = sorted(per_fold, key=lambda e: e["fold"])
    labels = list(per_fold[0]["test_per_class_f1"])
    first = per_fold[0]
    return {
        "recipe": first["recipe"],
        "config": first["config"],
        "overrides": overrides,
        "model": first["model"],
        "img_size": first["img_size"],
        "folds_run": [e["fold"] for e in per_fold],
        "k": k,
        "cv": {key: mean_std([e["test"][key] for e in per_fold]) for key in CV_KEYS},
        "per_class_f1": {label: mean_std([e["test_per_class_f1"][label] for e in per_fold]) for label in labels},
        "train_cpu_minutes_per_fold": mean_std([e["train_cpu_minutes"] for e in per_fold]),
        "train_seconds_per_fold": mean_std([e["train_seconds"] for e in per_fold]),
        "val_macro_f1": mean_std([e["val_macro_f1"] for e in per_fold]),
        "per_fold": per_fold,
    }


def format_cv_table(entries: list[dict]) -> str:
    """A Markdown table of the CV means ± std per recipe."""
    lines = [
        "| recipe | folds | acc | macro-F1 | off-by-1 | RMSE | ECE | F1 per class | train CPU min/fold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        cells = [f"{e['cv'][k]['mean']:.3f} ± {e['cv'][k]['std']:.3f}" for k in CV_KEYS]
        f1 = " / ".join(f"{v['mean']:.2f}" for v in e["per_class_f1"].values())
        name = e["recipe"] + (f" ({' '.join(e['overrides'])})" if e["overrides"] else "")
        lines.append(
            f"| {name} | {len(e['folds_run'])}/{e['k']} | "
            + " | ".join(cells)
            + f" | {f1} | {e['train_cpu_minutes_per_fold']['mean']:.1f} |"
        )
    return "\n".join(lines)


def plot_cv(entries: list[dict], out: Path) -> Path:
    """Macro-F1 (mean ± std over the folds run) against training CPU minutes per fold, one point per entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    for i, e in enumerate(sorted(entries, key=lambda e: e["train_cpu_minutes_per_fold"]["mean"])):
        x, f1 = max(e["train_cpu_minutes_per_fold"]["mean"], 0.02), e["cv"]["macro_f1"]
        ax.errorbar(x, f1["mean"], yerr=f1["std"], fmt="o", capsize=3)
        name = e["recipe"] + (f" ({' '.join(e['overrides'])})" if e["overrides"] else "")
        offset = (5, 3) if i % 2 == 0 else (5, -11)  # neighbours in cost alternate above and below their point
        ax.annotate(f"{name}, {len(e['folds_run'])}/{e['k']} folds", (x, f1["mean"]), fontsize=7, xytext=offset,
                    textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("training CPU minutes per fold (log; head-only recipes on cached features read ~0)")
    ax.set_ylabel(f"macro-F1, {entries[0]['k']}-fold CV (mean ± std over the folds run)")
    ax.set_title("abid-sample: recipes with the real trainer, accuracy against training cost")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def format_table(entries: list[dict]) -> str:
    """A Markdown table of the test metrics per recipe."""
    head = "| recipe | " + " | ".join(label for _, label in COLUMNS) + " | val macro-F1 | epochs (best) | train s |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 4)]
    for e in entries:
        cells = [f"{e['test'][key]:.3f}" for key, _ in COLUMNS]
        lines.append(
            f"| {e['recipe']}{' (' + ' '.join(e['overrides']) + ')' if e['overrides'] else ''} | "
            + " | ".join(cells)
            + f" | {e['val_macro_f1']:.3f} | {e['epochs_run']} ({e['best_epoch']}) | {e['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("abid", "synth"), default="abid")
    parser.add_argument("--recipes", default="seed-baseline,abid", help="comma-separated configs/ names or YAML paths")
    parser.add_argument("--epochs", type=int, default=0, help="override every recipe's epochs (0 = keep)")
    parser.add_argument("--img-size", type=int, default=0, help="override every recipe's img_size (0 = keep)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override, all recipes")
    parser.add_argument("--synth-n", type=int, default=SYNTH_N, help="SynthBins images (default: the report's 10,441)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--backend",
        default="torch",
        help="Predictor backend that scores each run (default torch: the precision policy's pick on this CPU; "
        "torch-fp32 / torch-bf16 force one; onnx, onnx-int8); not part of the result key: use --out per backend",
    )
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default results/accuracy_<dataset>.json)")
    parser.add_argument("--fresh", action="store_true", help="drop recipes of an earlier run from the result JSON")
    parser.add_argument(
        "--cv", type=int, nargs="?", const=5, default=0, metavar="K", help="K-fold cross-validation (alone: 5)"
    )
    parser.add_argument("--folds", default="", help="with --cv: comma-separated folds to run (default all)")
    parser.add_argument(
        "--report", action="store_true", help="with --cv: print the table of the result JSON, run nothing"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="with --cv: plot CV macro-F1 against training CPU minutes per fold for every recipe of the result "
        "JSON (and of --also files), run nothing",
    )
    parser.add_argument(
        "--also", type=Path, action="append", default=[], help="with --plot: more CV result JSONs to include"
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="with --cv: score the K fold models of each recipe on the fixed test split, alone and as one "
        "ensemble (with and without flip TTA); trains nothing",
    )
    args = parser.parse_args(argv)
    if args.cv == 1 or args.cv < 0:
        parser.error("--cv needs K >= 2 folds")

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("BINSIGHT_NO_PROGRESS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    root = bench_dir()
    root.mkdir(parents=True, exist_ok=True)
    overrides = list(args.set)
    if args.epochs:
        overrides.append(f"epochs={args.epochs}")
    if args.img_size:
        overrides.append(f"img_size={args.img_size}")

    if args.cv and args.plot:
        out = args.out or RESULTS / f"accuracy_{args.dataset}_cv{args.cv}.json"
        entries = [e for f in (out, *args.also) for e in json.loads(f.read_text())["recipes"]]
        print(f"wrote {plot_cv(merge_cv_entries(entries, args.cv), args.plot)}")
        return 0
    if args.cv and args.report:
        out = args.out or RESULTS / f"accuracy_{args.dataset}_cv{args.cv}.json"
        print(format_cv_table(merge_cv_entries(json.loads(out.read_text())["recipes"], args.cv)))
        return 0
    split_dir, summary = make_split(args.dataset, root, args.synth_n)
    if args.cv and args.ensemble:
        return main_ensemble(args, argv, root, split_dir)
    if args.cv:
        return main_cv(args, argv, root, split_dir, overrides)
    entries = []
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        print(f"== {recipe} on {args.dataset} ({split_dir})", flush=True)
        entries.append(run_recipe(recipe, split_dir, root, args.dataset, overrides, args.threads, backend=args.backend))
    report = {
        "benchmark": "accuracy",
        "dataset": args.dataset,
        "command": "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "torch_threads": args.threads,
        "split": {
            "dir": str(split_dir),
            "seed": summary.get("seed"),
            "sizes": {name: summary.get("totals", {}).get(name) for name in ("train", "val", "test")},
            "summary": {k: summary[k] for k in ("counts", "totals") if k in summary},
        },
        "recipes": entries,
    }
    out = args.out or RESULTS / f"accuracy_{args.dataset}.json"
    for entry in entries:
        entry["command"], entry["date"] = report["command"], report["date"]
    if out.is_file() and not args.fresh:
        # Keep other (recipe, overrides) entries of earlier runs on the same split: recipes can be run one at a time.
        old = json.loads(out.read_text())
        if old.get("dataset") == args.dataset and old.get("split", {}).get("sizes") == report["split"]["sizes"]:
            names = {(e["recipe"], tuple(e["overrides"])) for e in entries}
            entries[:0] = [e for e in old.get("recipes", []) if (e["recipe"], tuple(e["overrides"])) not in names]
            report["recipes"] = entries
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(entries))
    print(f"wrote {out}")
    return 0


def main_cv(args, argv, root: Path, split_dir: Path, overrides: list[str]) -> int:
    """``--cv K``: cross-validate every recipe; merge into ``results/accuracy_<dataset>_cv<K>.json``."""
    from binsight.data.split import write_kfold

    fold_dirs = write_kfold(split_dir, root / f"{args.dataset}-cv{args.cv}", k=args.cv, seed=0, val=0.1)
    folds = [int(f) for f in args.folds.split(",")] if args.folds else list(range(args.cv))
    if any(not 0 <= f < args.cv for f in folds):
        raise SystemExit(f"--folds must name folds 0..{args.cv - 1}")
    command = "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    entries = []
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        entry = run_cv(recipe, fold_dirs, folds, root, args.dataset, args, overrides)
        for fold in entry["per_fold"]:
            fold.update(command=command, date=date, machine=machine_info())
        entries.append(entry)
        out = args.out or RESULTS / f"accuracy_{args.dataset}_cv{args.cv}.json"
        old = json.loads(out.read_text()) if out.is_file() and not args.fresh else {"recipes": []}
        kept = merge_cv_entries(old["recipes"] + entries, args.cv)
        report = {
            "benchmark": "accuracy-cv",
            "dataset": args.dataset,
            "k": args.cv,
            "folds": {d.name: json.loads((d / "split_summary.json").read_text())["totals"] for d in fold_dirs},
            "torch_threads": args.threads,
            "recipes": kept,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_cv_table(merge_cv_entries(entries, args.cv)))
    return 0


def fold_run_dirs(root: Path, dataset: str, recipe: str, k: int) -> list[Path]:
    """The K fold runs ``--cv K`` left of ``recipe``, each evaluated (so calibrated); a clear error if one is not."""
    dirs = [recipe_run_dir(root, dataset, recipe, fold_tag(k, i)) for i in range(k)]
    missing = [str(d) for d in dirs if not (d / "metrics.json").is_file()]
    if missing:
        raise SystemExit(
            f"--ensemble needs all {k} evaluated fold runs of {recipe}; missing: {', '.join(missing)} "
            f"(run --cv {k} --recipes {recipe} first)"
        )
    return dirs


def calibrated_artifact(run_dir: Path) -> Path:
    """The artifact the fold's evaluation calibrated (a new version when it could not update it in place)."""
    written = json.loads((run_dir / "metrics.json").read_text()).get("artifact_written") or ""
    return Path(written) if written else run_dir / "artifact"


def score_ensemble(recipe: str, dirs: list[Path], split_dir: Path, out_root: Path, backend: str, threads: int) -> dict:
    """Each fold model alone, their ensemble, and the ensemble with flip TTA on ``split_dir``'s test rows."""
    import shutil

    from binsight.evaluation.evaluate import evaluate_run
    from binsight.inference.ensemble import write_ensemble

    keys = (*CV_KEYS, "macro_precision", "macro_recall")
    artifacts = [calibrated_artifact(d) for d in dirs]
    members = []
    for d, artifact in zip(dirs, artifacts, strict=True):
        m = evaluate_run(artifact, split="test", data=split_dir, calibrate=False, threads=threads, backend=backend)
        members.append({"run_dir": str(d), **{key: m[key] for key in keys}})
        print(f"   member {d.parent.name}: macro-F1 {m['macro_f1']:.3f} acc {m['accuracy']:.3f}", flush=True)
    rows = {"members": members, "member_mean": {key: mean_std([m[key] for m in members]) for key in keys}}
    for tta in (False, True):
        folder = out_root / f"{recipe_path(recipe).stem}{'-flip' if tta else ''}"
        if folder.exists():
            shutil.rmtree(folder)
        write_ensemble(artifacts, folder, tta_flip=tta)  # starts with the members' mean calibration
        m = evaluate_run(folder, split="test", data=split_dir, calibrate=False, threads=threads, backend=backend)
        name = "ensemble_flip" if tta else "ensemble"
        rows[name] = {key: m[key] for key in keys} | {"per_class_f1": {c: v["f1"] for c, v in m["per_class"].items()}}
        print(f"   {name}: macro-F1 {m['macro_f1']:.3f} acc {m['accuracy']:.3f}", flush=True)
    return rows


def format_ensemble_table(results: dict[str, dict]) -> str:
    """A Markdown table: the fold models alone (mean ± std), their ensemble, and the ensemble with flip TTA."""
    lines = [
        "| recipe | scored as | acc | macro-F1 | off-by-1 | RMSE | ECE | forward passes / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for recipe, r in results.items():
        k = len(r["members"])
        mean = [f"{r['member_mean'][key]['mean']:.3f} ± {r['member_mean'][key]['std']:.3f}" for key in CV_KEYS]
        lines.append(f"| {recipe} | each fold model alone ({k}) | " + " | ".join(mean) + " | 1 |")
        for name, label, passes in (("ensemble", f"ensemble of {k}", k), ("ensemble_flip", "+ flip TTA", 2 * k)):
            lines.append(
                f"| {recipe} | {label} | " + " | ".join(f"{r[name][key]:.3f}" for key in CV_KEYS) + f" | {passes} |"
            )
    return "\n".join(lines)


def main_ensemble(args, argv, root: Path, split_dir: Path) -> int:
    """``--cv K --ensemble``: score each recipe's fold models on the fixed test split; merge into the result JSON."""
    out = args.out or RESULTS / f"accuracy_{args.dataset}_cv{args.cv}_ensemble.json"
    report = json.loads(out.read_text()) if out.is_file() and not args.fresh else {"recipes": {}}
    results = {}
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        print(f"== {recipe}: {args.cv} fold models on the fixed test split ({split_dir})", flush=True)
        dirs = fold_run_dirs(root, args.dataset, recipe, args.cv)
        out_root = root / "runs" / f"accuracy-{args.dataset}-cv{args.cv}-ensemble"
        results[recipe] = score_ensemble(recipe, dirs, split_dir, out_root, args.backend, args.threads)
        results[recipe].update(
            command="python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            machine=machine_info(),
            backend=args.backend,
        )
    report.update(benchmark="accuracy-cv-ensemble", dataset=args.dataset, k=args.cv)
    report["recipes"].update(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_ensemble_table(results))
    print(f"wrote {out}")
    return 0


def merge_cv_entries(entries: list[dict], k: int) -> list[dict]:
    """One entry per (recipe, overrides): the folds of runs made one fold at a time are combined (later wins)."""
    folds: dict[tuple, dict[int, dict]] = {}
    for entry in entries:
        key = (entry["recipe"], tuple(entry["overrides"]))
        for fold in entry["per_fold"]:
            folds.setdefault(key, {})[fold["fold"]] = fold
    return [summarise_cv(list(per.values()), list(key[1]), k) for key, per in folds.items()]


if __name__ == "__main__":
    sys.exit(main())
