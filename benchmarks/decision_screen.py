"""Decision-rule screen on the real fold models that ``benchmarks/accuracy.py --cv K`` left behind.

    .venv/bin/python benchmarks/decision_screen.py --recipes abid-finetune,abid [--cv 5]

For each fold run of each recipe, the calibrated fold artifact predicts the fold's inner val and its held-out
fold once (float32, ``torch-fp32``; raw outputs are kept in ``<run>/decision_screen.npz``). Then every decision
rule is fitted on the inner val and scored on the held-out fold, exactly as ``binsight evaluate`` does with
``decision: macro_f1``: temperature first, then the rule's per-class offsets. Rules:

* ``argmax``: no offsets;
* ``fit``: :func:`binsight.evaluation.decision.fit_class_bias`, the shipped rule;
* ``fit, keep S``: the same with ``min_share=S`` (every class predicted at least S of its val support);
* ``bag:B``: offsets averaged over B stratified bootstrap draws of val (``cv_screen.bagged_class_bias``).

Fitting offsets costs milliseconds, so this measures decision rules on the fine-tuned networks themselves
without training anything. Results: ``benchmarks/results/decision_screen_abid.json``; a table of each rule's
cross-validated metrics and its macro-F1 gain over ``fit``, paired by fold, is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import bench_dir, calibrated_artifact, fold_run_dirs, mean_std  # noqa: E402
from cv_screen import bagged_class_bias  # noqa: E402
from machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "decision_screen_abid.json"
RULES = ("argmax", "fit", "fit, keep 0.25", "fit, keep 0.5", "bag:32")
KEYS = ("accuracy", "macro_f1", "off_by_one", "rmse")


def fold_outputs(run_dir: Path, threads: int) -> dict[str, np.ndarray]:
    """Raw outputs and labels of the fold's inner val and held-out rows (the split the run recorded as its
    ``data``), cached next to the run."""
    from binsight.data.manifest import load_split
    from binsight.evaluation.evaluate import predict_split, split_dir_of
    from binsight.inference.predictor import Predictor

    artifact = calibrated_artifact(run_dir)
    predictor = Predictor(artifact, backend="torch-fp32", threads=threads)
    cache = run_dir / "decision_screen.npz"
    if cache.is_file():
        data = dict(np.load(cache, allow_pickle=False))
        if str(data.get("version")) == predictor.meta.version:
            return data
    rows = load_split(split_dir_of(run_dir, None))
    out: dict[str, np.ndarray] = {"version": np.array(predictor.meta.version)}
    for split in ("val", "test"):
        result = predict_split(predictor, rows[split], desc=f"{run_dir.parent.name} {split}")
        out[f"{split}_raw"], out[f"{split}_y"] = result.raw, result.y
    np.savez(cache, **out)
    return out


def score_rules(outputs: dict[str, np.ndarray], head: str) -> dict[str, dict]:
    """Every rule fitted on the inner val, scored on the held-out fold."""
    from binsight.evaluation.calibration import fit_temperature
    from binsight.evaluation.decision import apply_class_bias, fit_class_bias
    from binsight.evaluation.metrics import classification_metrics
    from binsight.inference.predictor import outputs_to_probs_np

    yv, yt = outputs["val_y"], outputs["test_y"]
    temperature = fit_temperature(outputs["val_raw"], yv, head)
    pv = outputs_to_probs_np(outputs["val_raw"], head, temperature)
    pt = outputs_to_probs_np(outputs["test_raw"], head, temperature)
    k = pv.shape[1]
    scores = {}
    for rule in RULES:
        if rule == "argmax":
            bias = np.zeros(k)
        elif rule == "fit":
            bias = fit_class_bias(pv, yv)
        elif rule.startswith("fit, keep "):
            bias = fit_class_bias(pv, yv, min_share=float(rule.split()[-1]))
        else:
            bias = bagged_class_bias(pv, yv, int(rule.split(":")[1]))
        probs = apply_class_bias(pt, bias)
        m = classification_metrics(yt, probs.argmax(1), k, [str(c + 1) for c in range(k)], probs=probs)
        scores[rule] = {key: m[key] for key in KEYS} | {
            "per_class_f1": [round(v["f1"], 4) for v in m["per_class"].values()],
            "bias": [round(float(b), 2) for b in bias],
        }
    return scores


def table(recipe: str, folds: list[dict[str, dict]]) -> str:
    """Markdown: each rule's CV means and its macro-F1 gain over ``fit``, paired by fold."""
    lines = [
        f"| {recipe}: rule | macro-F1 | gain vs fit (paired) | acc | off-by-1 | RMSE | F1 per count |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        f1 = mean_std([f[rule]["macro_f1"] for f in folds])
        gain = mean_std([f[rule]["macro_f1"] - f["fit"]["macro_f1"] for f in folds])
        means = [np.mean([f[rule][key] for f in folds]) for key in ("accuracy", "off_by_one", "rmse")]
        per_class = " / ".join(f"{v:.2f}" for v in np.mean([f[rule]["per_class_f1"] for f in folds], axis=0))
        lines.append(
            f"| {rule} | {f1['mean']:.3f} ± {f1['std']:.3f} | "
            + ("—" if rule == "fit" else f"{gain['mean']:+.3f} ± {gain['std']:.3f}")
            + f" | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {per_class} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", required=True, help="comma-separated recipes whose --cv fold runs exist")
    parser.add_argument("--cv", type=int, default=5, help="K of the --cv run (default 5)")
    parser.add_argument("--dataset", default="abid")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from binsight.inference.artifact import read_meta

    torch.set_num_threads(args.threads)
    os.environ.setdefault("BINSIGHT_NO_PROGRESS", "1")
    logging.basicConfig(level=logging.WARNING)
    root = bench_dir()
    report = json.loads(args.out.read_text()) if args.out.is_file() else {"recipes": {}}
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        dirs = fold_run_dirs(root, args.dataset, recipe, args.cv)
        head = read_meta(calibrated_artifact(dirs[0])).head
        folds = []
        for run_dir in dirs:
            folds.append(score_rules(fold_outputs(run_dir, args.threads), head))
        report["recipes"][recipe] = {"folds": folds, "machine": machine_info(), "command": " ".join(sys.argv)}
        print(table(recipe, folds), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
