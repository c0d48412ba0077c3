"""The tuning report's rows and history plot: a pruned trial shows the last value it reported, and only
complete trials count as the best so far."""

from __future__ import annotations

import optuna

from binsight.tuning.report import plot_history, trial_rows


def test_pruned_trials_keep_their_last_reported_value(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    done = study.ask()
    study.tell(done, 0.6)
    pruned = study.ask()
    pruned.report(0.2, step=1)
    pruned.report(0.3, step=2)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    better = study.ask()
    better.report(0.9, step=1)
    study.tell(better, state=optuna.trial.TrialState.PRUNED)
    rows = trial_rows(study, [])
    assert [(r["state"], r["value"]) for r in rows] == [("COMPLETE", 0.6), ("PRUNED", 0.3), ("PRUNED", 0.9)]
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    captured = {}
    real_savefig = plt.Figure.savefig

    def keep(fig, *args, **kwargs):
        captured["axes"] = fig.axes[0]
        return real_savefig(fig, *args, **kwargs)

    plt.Figure.savefig = keep
    try:
        assert plot_history(rows, tmp_path / "history.png").stat().st_size > 1000
    finally:
        plt.Figure.savefig = real_savefig
    ax = captured["axes"]
    points = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert points["pruned (last reported value)"] == [[1, 0.3], [2, 0.9]]  # where they stopped, not at zero
    (best,) = [line for line in ax.get_lines() if line.get_label() == "best so far"]
    assert list(best.get_ydata()) == [0.6]  # a pruned 0.9 is not a result
