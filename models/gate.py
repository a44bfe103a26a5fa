"""The quality gate: a model that loses to a baseline on its own test split does not ship.

``train``, ``export`` and ``compare`` refuse to write such a model into a repository and say
which baselines beat it and by how much (``--allow-worse`` ships it anyway, and the manifest
records that it did); ``validate`` warns about a manifest whose model loses. Every method is
judged by test MASE on the same origins (``accuracy`` in the manifest), and the gate compares
the model with every baseline, so the best one decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Exit status of a command the gate refused (argparse uses 2, a crash 1).
EXIT_REFUSED = 3


@dataclass(frozen=True)
class Verdict:
    """The model's test MASE against every baseline's."""

    model_mase: float
    #: Baselines with a lower test MASE than the model's, best first, with their MASE.
    beaten_by: dict[str, float]
    best: str
    best_mase: float

    @property
    def passed(self) -> bool:
        return not self.beaten_by

    def message(self, name: str, *, allowed: bool = False) -> str:
        """Why ``name`` does not ship, naming each baseline that beats it and by how much
        (``allowed``: that it ships anyway)."""
        if self.passed:
            return (
                f"quality gate: {name} passes: test MASE {self.model_mase:.4g}, the best "
                f"baseline ({self.best}) {self.best_mase:.4g}"
            )
        losses = "; ".join(
            f"{baseline} {mase:.4g} (lower by {self.model_mase - mase:.3g}, the model's error "
            f"is {100 * (self.model_mase / mase - 1):.0f}% higher)"
            for baseline, mase in self.beaten_by.items()
        )
        verdict = (
            "ships anyway (--allow-worse, recorded in its manifest)"
            if allowed
            else ("is not shipped")
        )
        advice = (
            "" if allowed else " Pass --allow-worse to ship it anyway (its manifest records that)."
        )
        return (
            f"quality gate: {name} {verdict}: its test MASE {self.model_mase:.4g} is worse "
            f"than {len(self.beaten_by)} baseline(s): {losses}. The best, {self.best}, is "
            f"servable itself: train it with `{servable_as(self.best)}`.{advice}"
        )

    def record(self, *, allow_worse: bool) -> dict[str, Any]:
        """What the manifest's training record keeps of the gate."""
        out: dict[str, Any] = {
            "passed": self.passed,
            "model_mase": self.model_mase,
            "best_baseline": self.best,
            "best_baseline_mase": self.best_mase,
        }
        if not self.passed:
            out["beaten_by"] = dict(self.beaten_by)
            out["allow_worse"] = allow_worse
        return out


def judge(accuracy: dict[str, dict[str, float]]) -> Verdict:
    """The verdict for an ``accuracy`` table: ``"model"`` and one entry per baseline.

    A baseline equal to the model (a statistical kind is one of the baselines) does not beat
    it: only a strictly lower MASE does.

    Raises:
        ValueError: the table has no model or no baseline.
    """
    if "model" not in accuracy or len(accuracy) < 2:
        raise ValueError("an accuracy table needs a 'model' entry and at least one baseline")
    model = float(accuracy["model"]["mase"])
    baselines = {k: float(v["mase"]) for k, v in accuracy.items() if k != "model"}
    ranked = dict(sorted(baselines.items(), key=lambda item: item[1]))
    best, best_mase = next(iter(ranked.items()))
    return Verdict(
        model_mase=model,
        beaten_by={k: v for k, v in ranked.items() if v < model},
        best=best,
        best_mase=best_mase,
    )


def servable_as(baseline: str) -> str:
    """The ``train`` options that serve a baseline as a kind: ``ets_48_336`` ->
    ``--kind ets --season 48,336``; ``naive`` is a seasonal naive of period 1."""
    if baseline == "naive":
        return "--kind snaive --season 1"
    kind, _, periods = baseline.removeprefix("seasonal_").partition("_")
    name = {"naive": "snaive", "ets": "ets"}.get(kind, kind)
    return f"--kind {name} --season {periods.replace('_', ',') or '1'}"
