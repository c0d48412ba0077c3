"""Lever screening on cross-validated val folds, with frozen-backbone features computed once per backbone × size.

    .venv/bin/python benchmarks/cv_screen.py --exp "base: features=efficientnet_lite0:224" \\
        --exp "wce: features=efficientnet_lite0:224 loss=weighted_ce" [--folds 5] [--seeds 0]

The pool is the train + val rows of the benchmark's fixed split (``benchmarks/accuracy.py``: abid-sample,
80/10/10, seed 42); its test rows are never touched here. The folds are ``binsight.data.split.kfold_parts``
(stratified, leak-free by sha256, seed 0): in fold i a head is trained on the other folds' train part,
early-stopped, calibrated and thresholded on their inner val part, and scored on fold i. So these are the
same folds ``benchmarks/accuracy.py --cv`` trains whole recipes on.

Backbone features of every image are computed once per ``model:size`` (letterbox; ``+flip`` for mirrored
images; ``model:size@bf16`` computes them in bf16 autocast, as ``amp: bf16`` training does, else float32 as
``amp: off``) through the feature cache (``binsight.training.features``) and reused by every experiment: a head
trains in seconds. The head loop below is a probe for *screening*: it uses binsight's heads, losses,
optimiser and schedule, but it is not ``binsight train``; the shipped recipes are measured with the real
trainer by ``benchmarks/accuracy.py --cv``.

Experiment keys (defaults are ``configs/abid-softmax.yaml``'s): ``features`` (``model:size``, several joined by
``+`` are concatenated), ``head`` (softmax|ordinal), ``loss`` (ce|weighted_ce|focal|ordinal|gce),
``label_smoothing``, ``lr``, ``weight_decay``, ``epochs``, ``batch_size``, ``patience``, ``balance`` (0|1),
``dropout``, ``tta`` (0|1: mean of the image's and its mirror's outputs), ``bias`` (none|fit|bag:B|prior:TAU:
decision thresholds fitted for macro-F1 on val, their mean over B bootstrap draws of val, or logit adjustment),
``standardize`` (0|1: z-score features with train statistics), ``hidden`` (0 = linear head; else a
1-hidden-layer MLP of that width), ``heads`` (heads with different seeds averaged per fold).
Results append to ``benchmarks/results/cv_screen_abid.json``.

``--time-precision model:size`` measures what bf16 saves on the real feature path: ``compute_features`` over the
first 256 decoded pool images at that size, float32 and bf16 alternating round by round, CPU-seconds per image.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import bench_dir, make_split  # noqa: E402
from machine import append_result, machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "cv_screen_abid.json"
TIMING_RESULTS = REPO / "benchmarks" / "results" / "feature_precision_abid.json"
DEFAULTS: dict[str, str] = {
    "features": "efficientnet_lite0:224",
    "head": "softmax",
    "loss": "weighted_ce",
    "label_smoothing": "0",
    "lr": "1e-3",
    "weight_decay": "1e-4",
    "epochs": "30",
    "batch_size": "32",
    "patience": "5",
    "warmup_epochs": "0.5",
    "balance": "0",
    "dropout": "0",
    "tta": "0",
    "bias": "none",
    "standardize": "0",
    "hidden": "0",
    "heads": "1",
}
SUMMARY_KEYS = ("accuracy", "macro_f1", "off_by_one", "rmse", "ece")


def parse_exp(text: str) -> tuple[str, dict[str, str]]:
    """``"name: k=v k=v"`` → ``(name, {k: v})`` over :data:`DEFAULTS` (unknown keys are an error)."""
    name, _, rest = text.partition(":")
    params = dict(DEFAULTS)
    for item in shlex.split(rest):
        key, _, value = item.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"unknown experiment key {key!r}; known: {', '.join(DEFAULTS)}")
        params[key] = value
    return name.strip(), params


def parse_spec(spec: str) -> tuple[str, int, str]:
    """``model:size[@bf16]`` → ``(model, size, amp)``: ``amp`` is ``bf16`` with the suffix, else ``off`` (float32,
    whatever ``amp: auto`` would pick on this CPU, so a spec means the same features on every machine)."""
    body, _, precision = spec.partition("@")
    model_name, _, size = body.partition(":")
    if precision not in ("", "bf16") or not size.isdigit():
        raise SystemExit(f"bad features spec {spec!r}: expected MODEL:SIZE or MODEL:SIZE@bf16")
    return model_name, int(size), "bf16" if precision else "off"


def split_features(
    spec: str, split_dir: Path, root: Path, flip: bool, parts: tuple[str, ...] = ("train", "val")
) -> dict[str, np.ndarray]:
    """Features of the fixed split's ``parts`` for ``model:size[@bf16]`` (cached; timed when built)."""
    import torch

    from binsight.data.cache import build_decode_cache
    from binsight.data.manifest import load_split
    from binsight.models import create_model
    from binsight.training.features import cached_features

    model_name, size, amp = parse_spec(spec)
    rows = load_split(split_dir)
    model = create_model(model_name, 5, weights="imagenet").eval()
    out = {}
    timing_file = root / "feature_timing.json"
    timing = {}
    for part in parts:
        t0, c0 = time.monotonic(), time.process_time()
        decoded = build_decode_cache(rows[part], size, "letterbox", root / "cache", desc=f"decode {part}")
        c1 = time.process_time()
        feats, built = cached_features(
            model,
            model_name,
            decoded,
            model.default_cfg["mean"],
            model.default_cfg["std"],
            torch.device("cpu"),
            root / "cache",
            flip=flip,
            desc=f"features {spec} {part}",
            amp=amp,
        )
        if built or decoded.built:
            timing[f"{spec}{'+flip' if flip else ''}:{part}"] = {
                "wall_s": round(time.monotonic() - t0, 1),
                "cpu_s": round(time.process_time() - c0, 1),
                "decode_cpu_s": round(c1 - c0, 1),
                "features_cpu_s": round(time.process_time() - c1, 1) if built else 0.0,
                "n": len(decoded),
                "load_avg_1min": round(os.getloadavg()[0], 2),
            }
        out[part] = feats
    if timing:  # re-read first: other screens may have timed other features meanwhile
        timing = {**(json.loads(timing_file.read_text()) if timing_file.is_file() else {}), **timing}
        timing_file.write_text(json.dumps(timing, indent=2) + "\n")
    return out


def feature_cpu_minutes(specs: list[str], flip: bool, root: Path) -> float | None:
    """CPU minutes the features of ``specs`` cost for the pool (train + val), when their build was timed.

    A build that found its images already decoded (another spec at the same size decoded them) is charged the
    decode time recorded for that size, so float32 and bf16 features at one size carry the same decode cost.
    """
    timing_file = root / "feature_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    decode: dict[tuple[int, str], float] = {}
    for tag, entry in timing.items():
        if "decode_cpu_s" in entry:
            size, part = parse_spec(tag.rsplit(":", 1)[0].removesuffix("+flip"))[1], tag.rsplit(":", 1)[1]
            decode[size, part] = max(decode.get((size, part), 0.0), entry["decode_cpu_s"])
    total = 0.0
    for spec in specs:
        for tag in [spec, *([f"{spec}+flip"] if flip else [])]:
            for part in ("train", "val"):
                entry = timing.get(f"{tag}:{part}")
                if entry is None:
                    return None
                if "features_cpu_s" in entry:
                    total += entry["features_cpu_s"] + decode.get((parse_spec(spec)[1], part), 0.0)
                else:  # timed before decode and features were told apart: both are in cpu_s
                    total += entry["cpu_s"]
    return round(total / 60, 2)


def time_precision(spec: str, split_dir: Path, root: Path, n: int = 256, rounds: int = 3) -> dict:
    """CPU-seconds per image of ``compute_features`` (the feature cache's path) in float32 and bf16 autocast,
    alternating round by round (the order flips each round) so the host's drift hits both alike.

    Runs over the first ``n`` pool images at ``model:size``, decoded from the decode cache (built if missing).
    """
    import torch

    from binsight.data.cache import build_decode_cache
    from binsight.data.manifest import load_split
    from binsight.models import create_model
    from binsight.training.features import compute_features

    model_name, size, _ = parse_spec(spec)
    model = create_model(model_name, 5, weights="imagenet").eval()
    decoded = build_decode_cache(load_split(split_dir)["train"], size, "letterbox", root / "cache")
    images = np.array(decoded.images[:n])
    mean, std = model.default_cfg["mean"], model.default_cfg["std"]
    dtypes = {"float32": None, "bf16": torch.bfloat16}

    def run(dtype, x: np.ndarray) -> np.ndarray:
        return compute_features(model, x, mean, std, torch.device("cpu"), desc="timing", dtype=dtype)

    for dtype in dtypes.values():  # warm-up: oneDNN primitives for this shape and precision
        run(dtype, images[:64])
    cpu: dict[str, list[float]] = {name: [] for name in dtypes}
    feats: dict[str, np.ndarray] = {}
    loads = []
    for r in range(rounds):
        for name in list(dtypes) if r % 2 == 0 else list(dtypes)[::-1]:
            c0 = time.process_time()
            feats[name] = run(dtypes[name], images)
            cpu[name].append((time.process_time() - c0) / len(images))
        loads.append(round(os.getloadavg()[0], 2))
    ratios = [f / b for f, b in zip(cpu["float32"], cpu["bf16"], strict=True)]
    cos = (feats["float32"] * feats["bf16"]).sum(1) / (
        np.linalg.norm(feats["float32"], axis=1) * np.linalg.norm(feats["bf16"], axis=1) + 1e-12
    )
    return {
        "spec": f"{model_name}:{size}",
        "images": len(images),
        "rounds": rounds,
        "cpu_ms_per_image": {name: [round(1000 * v, 1) for v in vals] for name, vals in cpu.items()},
        "speedup_per_round": [round(v, 2) for v in ratios],
        "speedup_median": round(float(np.median(ratios)), 2),
        "feature_cosine_min": round(float(cos.min()), 4),
        "load_avg_1min": [min(loads), max(loads)],
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class PoolFeatures:
    """Pool (train + val of the fixed split) features per experiment ``features`` string, loaded once."""

    def __init__(self, split_dir: Path, root: Path) -> None:
        from binsight.data.manifest import load_split

        self.split_dir, self.root = split_dir, root
        rows = load_split(split_dir)
        self.pool = rows["train"] + rows["val"]
        self.index = {str(r.path): i for i, r in enumerate(self.pool)}
        self._cache: dict[tuple[str, bool], np.ndarray] = {}

    def get(self, features: str, flip: bool = False) -> np.ndarray:
        key = (features, flip)
        if key not in self._cache:
            parts = []
            for spec in features.split("+"):
                f = split_features(spec, self.split_dir, self.root, flip)
                parts.append(np.concatenate([f["train"], f["val"]]))
            self._cache[key] = np.concatenate(parts, axis=1).astype(np.float32)
        return self._cache[key]

    def rows_index(self, rows) -> np.ndarray:
        return np.array([self.index[str(r.path)] for r in rows], dtype=np.int64)


def train_head(x_tr, y_tr, x_va, y_va, p: dict[str, str], seed: int, class_counts: list[int]):
    """Train one head on features with binsight's head/loss/optimiser/schedule; early stopping on val macro-F1.

    Returns:
        The head (eval mode) at its best val epoch.
    """
    import copy

    import torch
    from torch import nn

    from binsight.evaluation.metrics import classification_metrics
    from binsight.models.heads import build_head, outputs_to_probs
    from binsight.training.data import balanced_weights, batch_slices, epoch_order
    from binsight.training.losses import build_loss
    from binsight.training.optim import LRSchedule

    torch.manual_seed(seed)
    k = len(class_counts)
    head = build_head(p["head"], int(p["hidden"]) or x_tr.shape[1], k, float(p["dropout"]))
    if int(p["hidden"]):
        head = nn.Sequential(nn.Linear(x_tr.shape[1], int(p["hidden"])), nn.ReLU(), head)
    loss_fn = build_loss(p["loss"], k, class_counts, float(p["label_smoothing"]))
    opt = torch.optim.AdamW(head.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    epochs, bs = int(p["epochs"]), int(p["batch_size"])
    n = len(y_tr)
    steps = len(batch_slices(torch.arange(n), bs))
    schedule = LRSchedule("cosine", steps, epochs, float(p["warmup_epochs"]))
    gen = torch.Generator().manual_seed(seed + 1)
    weights = balanced_weights(y_tr, k) if p["balance"] == "1" else None
    xt, yt, xv = torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_va)
    best, best_state, bad, step = -1.0, None, 0, 0
    for _ in range(epochs):
        head.train()
        for idx in batch_slices(epoch_order(n, gen, weights), bs):
            schedule.apply(opt, float(p["lr"]), step)
            loss = loss_fn(head(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        head.eval()
        with torch.no_grad():
            pred = outputs_to_probs(head(xv), p["head"]).argmax(1).numpy()
        f1 = classification_metrics(y_va, pred, k)["macro_f1"]
        if f1 > best:
            best, best_state, bad = f1, copy.deepcopy(head.state_dict()), 0
        else:
            bad += 1
            if bad >= int(p["patience"]):
                break
    head.load_state_dict(best_state)
    return head.eval()


def head_outputs(heads, x: np.ndarray, x_flip: np.ndarray | None) -> np.ndarray:
    """Raw outputs averaged over the heads (and over the mirrored features when given)."""
    import torch

    views = [x] if x_flip is None else [x, x_flip]
    with torch.no_grad():
        outs = [h(torch.from_numpy(v)).numpy() for h in heads for v in views]
    return np.mean(outs, axis=0)


def bagged_class_bias(probs: np.ndarray, y: np.ndarray, resamples: int, seed: int = 0) -> np.ndarray:
    """Mean of ``fit_class_bias`` over ``resamples`` stratified bootstrap draws of val (the ``bias=bag:B`` lever)."""
    from binsight.evaluation.decision import fit_class_bias

    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in np.unique(y)]
    fits = []
    for _ in range(resamples):
        idx = np.concatenate([rng.choice(m, size=len(m), replace=True) for m in members])
        fits.append(fit_class_bias(probs[idx], y[idx]))
    return np.mean(fits, axis=0)


def run_fold(pool: PoolFeatures, parts: dict, p: dict[str, str], seed: int, classes: list[int]) -> dict:
    """Train on one fold's train part, calibrate on its val part, score its held-out (test) fold."""
    from binsight.evaluation.calibration import fit_temperature
    from binsight.evaluation.decision import apply_class_bias, fit_class_bias, prior_bias
    from binsight.evaluation.metrics import classification_metrics
    from binsight.inference.predictor import outputs_to_probs_np

    feats = pool.get(p["features"])
    flip = pool.get(p["features"], flip=True) if p["tta"] == "1" else None
    index = {c: i for i, c in enumerate(classes)}
    idx = {name: pool.rows_index(rows) for name, rows in parts.items()}
    y = {name: np.array([index[r.label] for r in rows], dtype=np.int64) for name, rows in parts.items()}
    x = {name: feats[i] for name, i in idx.items()}
    xf = {name: flip[i] for name, i in idx.items()} if flip is not None else dict.fromkeys(idx)
    if p["standardize"] == "1":
        mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-6
        x = {name: (v - mu) / sd for name, v in x.items()}
        xf = {name: (v - mu) / sd if v is not None else None for name, v in xf.items()}
    counts = [int((y["train"] == i).sum()) for i in range(len(classes))]
    c0 = time.process_time()
    heads = [
        train_head(x["train"], y["train"], x["val"], y["val"], p, seed + 1000 * h, counts)
        for h in range(int(p["heads"]))
    ]
    out_val = head_outputs(heads, x["val"], xf["val"])
    out_test = head_outputs(heads, x["test"], xf["test"])
    temperature = fit_temperature(out_val, y["val"], p["head"])
    probs_val = outputs_to_probs_np(out_val, p["head"], temperature)
    probs_test = outputs_to_probs_np(out_test, p["head"], temperature)
    bias = np.zeros(len(classes))
    if p["bias"] == "fit":
        bias = fit_class_bias(probs_val, y["val"])
    elif p["bias"].startswith("bag:"):
        bias = bagged_class_bias(probs_val, y["val"], int(p["bias"].split(":")[1]))
    elif p["bias"].startswith("prior:"):
        bias = prior_bias(counts, float(p["bias"].split(":")[1]))
    probs_test = apply_class_bias(probs_test, bias)
    m = classification_metrics(
        y["test"], probs_test.argmax(1), len(classes), [str(c) for c in classes], probs=probs_test
    )
    m["head_cpu_s"] = time.process_time() - c0
    m["bias"] = [round(float(b), 2) for b in bias]
    m["temperature"] = round(float(temperature), 3)
    return m


def summarise(folds: list[dict], classes: list[int]) -> dict:
    """Mean and std over folds of the headline metrics and per-class F1."""
    out = {}
    for key in SUMMARY_KEYS:
        v = np.array([f[key] for f in folds])
        out[key] = {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4)}
    out["per_class_f1"] = {
        str(c): round(float(np.mean([f["per_class"][str(c)]["f1"] for f in folds])), 4) for c in classes
    }
    out["fold_macro_f1"] = [round(f["macro_f1"], 4) for f in folds]
    out["head_cpu_s_per_fold"] = round(float(np.mean([f["head_cpu_s"] for f in folds])), 1)
    return out


def cpu_minutes(entry: dict, root: Path) -> float | None:
    """CPU minutes to train one fold of an experiment: pool features (timed or measured) + one fold's heads."""
    p = entry["params"]
    feats = feature_cpu_minutes(p["features"].split("+"), p.get("tta", "0") == "1", root)
    return None if feats is None else round(feats + entry["cv"]["head_cpu_s_per_fold"] / 60, 2)


def plot_accuracy_vs_cpu(entries: list[dict], root: Path, out: Path) -> Path:
    """Scatter of CV macro-F1 (mean ± std over folds) against CPU minutes per fold, one point per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latest = {e["name"]: e for e in entries}
    fig, ax = plt.subplots(figsize=(10, 7))
    for name, e in latest.items():
        x = cpu_minutes(e, root)
        if x is None:
            continue
        f1 = e["cv"]["macro_f1"]
        ax.errorbar(x, f1["mean"], yerr=f1["std"], fmt="o", capsize=3)
        ax.annotate(name, (x, f1["mean"]), fontsize=6, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("CPU minutes per fold (backbone features of the pool + head training; 2-core AMD EPYC)")
    ax.set_ylabel(f"macro-F1, {next(iter(latest.values()))['folds']}-fold CV (mean ± std)")
    ax.set_title("abid-sample: lever screen on frozen-backbone features")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def seed_average(runs: list[dict]) -> dict:
    """One experiment's ``cv`` summary averaged over its head seeds: per-fold macro-F1 averaged seed by seed
    (its std is then over folds), the other means and per-class F1 averaged."""
    folds = np.mean([r["cv"]["fold_macro_f1"] for r in runs], axis=0)
    cv = {k: {"mean": float(np.mean([r["cv"][k]["mean"] for r in runs]))} for k in SUMMARY_KEYS}
    cv["macro_f1"]["std"] = runs[0]["cv"]["macro_f1"]["std"] if len(runs) == 1 else float(folds.std(ddof=1))
    cv["fold_macro_f1"] = folds.tolist()
    classes = runs[0]["cv"]["per_class_f1"]
    cv["per_class_f1"] = {c: float(np.mean([r["cv"]["per_class_f1"][c] for r in runs])) for c in classes}
    return cv


def ablation_table(entries: list[dict], reference: str, root: Path) -> str:
    """Markdown: each experiment's CV means and its macro-F1 gain over ``reference``, paired by fold (mean ± std).

    An experiment run with several head seeds (``--seeds``) is averaged over them fold by fold (the latest run
    of each seed counts); its name then says how many.
    """
    if not any(e["name"] == reference for e in entries):
        raise SystemExit(f"no experiment named {reference!r} in the results")
    k_folds = next(e for e in reversed(entries) if e["name"] == reference)["folds"]
    latest = {(e["name"], e["seed"]): e for e in entries if e["folds"] == k_folds}
    by_name: dict[str, list[dict]] = {}
    for (name, _), e in latest.items():
        by_name.setdefault(name, []).append(e)
    ref_cv = seed_average(by_name[reference])
    lines = [
        "| experiment | macro-F1 | gain vs " + reference + " (paired by fold) | accuracy | off-by-1 | RMSE | ECE "
        "| F1 per count 1/2/3/4/5 | CPU min per fold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in by_name.items():
        cv = seed_average(runs)
        gain = np.array(cv["fold_macro_f1"]) - np.array(ref_cv["fold_macro_f1"])
        cells = [f"{cv['macro_f1']['mean']:.3f} ± {cv['macro_f1']['std']:.3f}"]
        cells.append(f"{gain.mean():+.3f} ± {gain.std(ddof=1):.3f}" if name != reference else "—")
        cells += [
            f"{cv[k]['mean']:.3f}" if k != "rmse" else f"{cv[k]['mean']:.2f}" for k in SUMMARY_KEYS if k != "macro_f1"
        ]
        cells.append(" / ".join(f"{v:.2f}" for v in cv["per_class_f1"].values()))
        minutes = cpu_minutes(runs[-1], root)
        cells.append("" if minutes is None else f"{minutes:.1f}")
        label = name if len(runs) == 1 else f"{name} ({len(runs)} head seeds)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", action="append", default=[], help='"name: key=value ..." (repeatable)')
    parser.add_argument(
        "--extract", action="append", default=[], metavar="MODEL:SIZE[@bf16][+flip]", help="only build these features"
    )
    parser.add_argument(
        "--time-precision",
        action="append",
        default=[],
        metavar="MODEL:SIZE",
        help="time float32 vs bf16 feature extraction at this size (interleaved; appends to --timing-results)",
    )
    parser.add_argument("--timing-results", type=Path, default=TIMING_RESULTS)
    parser.add_argument("--folds", type=int, default=5, help="k of the k-fold split (default 5)")
    parser.add_argument("--seeds", default="0", help="comma-separated head seeds (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--table", metavar="REFERENCE", help="print the ablation table against this experiment")
    parser.add_argument("--plot", type=Path, help="write the macro-F1 vs CPU-minutes plot (PNG) and stop")
    args = parser.parse_args(argv)
    if args.table or args.plot:
        entries = json.loads(args.results.read_text())
        if args.table:
            print(ablation_table(entries, args.table, bench_dir()))
        if args.plot:
            print(f"wrote {plot_accuracy_vs_cpu(entries, bench_dir(), args.plot)}")
        return 0

    import torch

    from binsight.data.split import kfold_parts

    torch.set_num_threads(args.threads)
    os.environ.setdefault("BINSIGHT_NO_PROGRESS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    root = bench_dir()
    split_dir, summary = make_split("abid", root)
    for spec in args.extract:
        t0 = time.monotonic()
        split_features(spec.removesuffix("+flip"), split_dir, root, spec.endswith("+flip"))
        print(f"features {spec}: {time.monotonic() - t0:.0f}s", flush=True)
    for spec in args.time_precision:
        row = {**time_precision(spec, split_dir, root), "cpu_model": machine_info()["cpu_model"]}
        append_result(args.timing_results, row)
        ms = {k: float(np.median(v)) for k, v in row["cpu_ms_per_image"].items()}
        print(
            f"{row['spec']}: float32 {ms['float32']:.1f} ms/img, bf16 {ms['bf16']:.1f} ms/img (CPU), "
            f"float32/bf16 {row['speedup_median']:.2f}x per round {row['speedup_per_round']}, "
            f"feature cosine >= {row['feature_cosine_min']}, load {row['load_avg_1min']}",
            flush=True,
        )
    pool = PoolFeatures(split_dir, root)
    classes = sorted({r.label for r in pool.pool})
    fold_parts = kfold_parts(pool.pool, args.folds, seed=0, val=0.1)
    for text in args.exp:
        name, params = parse_exp(text)
        for seed in [int(s) for s in args.seeds.split(",")]:
            t0 = time.monotonic()
            folds = [run_fold(pool, parts, params, seed, classes) for parts in fold_parts]
            specs = params["features"].split("+")
            row = {
                "name": name,
                "params": {k: v for k, v in params.items() if v != DEFAULTS[k] or k == "features"},
                "seed": seed,
                "folds": args.folds,
                "cv": summarise(folds, classes),
                "feature_cpu_min_pool": feature_cpu_minutes(specs, params["tta"] == "1", root),
                "wall_s": round(time.monotonic() - t0, 1),
                "load_avg_1min": round(os.getloadavg()[0], 2),
                "cpu_model": machine_info()["cpu_model"],
            }
            append_result(args.results, row)
            cv = row["cv"]
            print(
                f"{name:<24} s{seed} macro-F1 {cv['macro_f1']['mean']:.3f}±{cv['macro_f1']['std']:.3f} "
                f"acc {cv['accuracy']['mean']:.3f}±{cv['accuracy']['std']:.3f} "
                f"off1 {cv['off_by_one']['mean']:.3f} rmse {cv['rmse']['mean']:.2f} ece {cv['ece']['mean']:.3f} "
                f"F1/class {list(cv['per_class_f1'].values())} {row['wall_s']:.0f}s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
