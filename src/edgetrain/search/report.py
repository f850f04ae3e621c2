"""The search's report (Markdown + one PNG): what was tried, the validation front, the memory
predictor's error, and, after the final round, the found front beside the hand-made models on
test accuracy and memory with the hypervolume of each against one fixed reference point.

The reference point is (0 % test accuracy, the budget in MB above baseline): a model whose
training adds more than the whole budget could not train on the device and adds nothing.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from edgetrain.fileio import atomic_write_text
from edgetrain.report.pareto import hypervolume, non_dominated
from edgetrain.report.tables import format_stat, summarize
from edgetrain.search.early_stop import epochs_saved
from edgetrain.search.final import trained_trials, val_accuracy

_FRONT_KEYS = ("test_accuracy", "peak_above_baseline_mb")
_DIRS = ("max", "min")


def trial_counts(study: optuna.Study) -> dict[str, int]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    trained = trained_trials(study)
    records = [t.user_attrs["record"] for t in trained]
    return {
        "complete": len(complete),
        "trained": len(trained),
        "infeasible": sum(bool(t.user_attrs.get("infeasible")) for t in complete),
        "repeats": sum("duplicate_of" in t.user_attrs for t in complete),
        "stopped_early": sum(r.get("status") == "stopped_early" for r in records),
        "epochs_saved": epochs_saved(
            [int(r["config"]["epochs"]) for r in records], [len(r["history"]) for r in records]
        ),
        "failed": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
    }


def trial_wall_s(study: optuna.Study) -> tuple[int, float]:
    """(complete trials, their summed wall time in s): what a search cost across resumes and
    workers, which no single process's clock sees. A failed trial is left out: its end is when a
    later worker noticed its stale heartbeat, which may be hours after it died."""
    spans = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.datetime_start is not None and t.datetime_complete is not None
    ]
    return len(spans), float(sum(spans))


def predictor_errors(study: optuna.Study) -> list[dict[str, Any]]:
    """Predicted vs measured whole-process peak RSS of every trained trial (that ran every
    epoch and so measured its peak fully)."""
    rows = []
    for t in trained_trials(study):
        p, r = t.user_attrs.get("prediction"), t.user_attrs["record"]
        if not p:
            continue
        rows.append({
            "trial": t.number, "spec_id": t.user_attrs["spec_id"],
            "predicted_peak_mb": p["predicted_peak_mb"], "peak_rss_mb": r["peak_rss_mb"],
            "error": p["predicted_peak_mb"] / r["peak_rss_mb"] - 1,
            "predicted_above_mb": p["predicted_above_baseline_mb"],
            "above_mb": r["peak_above_baseline_mb"],
        })  # fmt: skip
    return rows


def found_models(records: list[dict[str, Any]]) -> set[str]:
    """Final-round models that are not registered hand-made ones: the candidates of this search
    and of any other search sharing its final round (`--final-study`)."""
    from edgetrain.models.registry import list_models

    return {r["model"] for r in records} - set(list_models())


def front_stats(records: list[dict[str, Any]], found: set[str]) -> dict[str, Any]:
    """Mean per model over seeds, split into found and hand-made; each side's front and
    hypervolume (reference filled in by the caller)."""
    rows = [r for rows in summarize(records).values() for r in rows]
    side: dict[str, list[tuple[str, float, float]]] = {"found": [], "hand-made": []}
    for row in rows:
        point = (row.model, row.mean("test_accuracy"), row.mean("peak_above_baseline_mb"))
        side["found" if row.model in found else "hand-made"].append(point)
    return side


def side_hypervolume(points: list[tuple[str, float, float]], reference: tuple[float, float]):
    if not points:
        return 0.0, []
    values = np.array([[a, m] for _, a, m in points])
    mask = non_dominated(values, _DIRS)
    return hypervolume(values, _DIRS, reference), [
        p for p, on in zip(points, mask, strict=True) if on
    ]


def write_report(
    out: Path,
    study: optuna.Study,
    final_records: list[dict[str, Any]] | None,
    cpu_s: float,
    final_study: optuna.Study | None = None,
) -> Path:
    info = study.user_attrs.get("search", {})
    lines = [f"# edgetrain search: {study.study_name}", ""]
    lines += _settings_lines(info)
    lines += _time_lines(study, final_study, cpu_s)
    lines += _trials_lines(study)
    lines += _unbuildable_lines(study)
    lines += _predictor_lines(predictor_errors(study))
    if final_records:
        found_ids = found_models(final_records)
        # the headline: paired verdicts and the dominance table, then fronts and hypervolumes
        lines += _verdict_lines(final_records)
        lines += _final_lines(out, found_ids, final_records, float(info.get("budget_mb", 0)))
        lines += _final_table(final_records, found_ids, str(info.get("base") or ""))
        lines += _use_it_lines(out, final_records, found_ids)
    path = out / "search-report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _verdict_lines(records: list[dict[str, Any]]) -> list[str]:
    """The paired verdicts and the dominance table of the final round (report/verdicts.py)."""
    from edgetrain.report.render import to_markdown, verdict_blocks

    lines: list[str] = []
    for rows in summarize(records).values():
        blocks = verdict_blocks(rows)
        if blocks:
            lines += [*to_markdown(blocks).splitlines(), ""]
    if lines:
        lines = ["## Final round: which found model is at least as good, for how much memory", "",
                 *lines]  # fmt: skip
    return lines


def _settings_lines(info: dict[str, Any]) -> list[str]:
    p = info.get("protocol", {})
    return [
        f"Space **{info.get('space')}** (base {info.get('base')}), objectives "
        f"{', '.join(info.get('objectives', []))}, sampler {info.get('sampler')} "
        f"(seed {info.get('seed')}), budget {info.get('budget_mb', 0):.0f} MB.",
        f"Trials train on {p.get('data')} at {p.get('resolution')} px, {p.get('epochs')} epochs, "
        f"batch {p.get('batch_size')}, {p.get('optimizer')} lr {p.get('lr')}; selection on "
        "validation accuracy only.",
        "",
    ]


def _time_lines(study: optuna.Study, final_study: optuna.Study | None, cpu_s: float) -> list[str]:
    n, wall_s = trial_wall_s(study)
    line = f"Time: {n} complete search trials ran for {wall_s / 60:.1f} min in all (summed "
    line += "trial wall time, over every resume and worker; failed trials left out)"
    if final_study is not None:
        n_final, final_s = trial_wall_s(final_study)
        line += f"; the final round's {n_final} runs for {final_s / 60:.1f} min"
    line += "."
    if cpu_s > 0:  # 0: the report was rewritten outside a search (nothing ran)
        line += f" This invocation's child processes used {cpu_s / 60:.1f} min of CPU."
    return [line, ""]


def _trials_lines(study: optuna.Study) -> list[str]:
    c = trial_counts(study)
    lines = [
        "## Trials",
        "",
        f"{c['complete']} complete: {c['trained']} trained, {c['infeasible']} infeasible "
        f"(predicted over budget, or not buildable: never trained), {c['repeats']} repeats of a "
        "genome already tried; "
        f"{c['stopped_early']} stopped early (dominated), saving {c['epochs_saved']} epochs; "
        f"{c['failed']} failed (a crashed or interrupted trial is retried as a new one).",
        "",
        "| trial | spec | val acc | peak − baseline (MB) | s / epoch | params | MACs (M) | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    trained = sorted(trained_trials(study), key=lambda t: -val_accuracy(t))
    for t in trained[:30]:
        r = t.user_attrs["record"]
        lines.append(
            f"| {t.number} | {t.user_attrs['spec_id']} | {r.get('val_accuracy') or 0:.3f} | "
            f"{r['peak_above_baseline_mb']:.0f} | {r['epoch_s']:.1f} | {r.get('params_total'):,} "
            f"| {(r.get('macs') or 0) / 1e6:.0f} | {r.get('status')} |"
        )
    return [*lines, ""]


_UNBUILDABLE_SHOWN = 20


def _unbuildable_lines(study: optuna.Study) -> list[str]:
    """The genomes that could not be built, probed or timed, each with its reason."""
    failed = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("infeasible") and t.user_attrs.get("error")
        and "duplicate_of" not in t.user_attrs
    ]  # fmt: skip
    if not failed:
        return []
    lines = [
        "## Genomes that could not be built or probed",
        "",
        f"{len(failed)} genome(s), stored as infeasible and never trained"
        + (f"; the first {_UNBUILDABLE_SHOWN}:" if len(failed) > _UNBUILDABLE_SHOWN else ":"),
        "",
    ]
    for t in failed[:_UNBUILDABLE_SHOWN]:
        what = t.user_attrs.get("spec_id") or json.dumps(t.user_attrs.get("genome"))
        lines.append(f"- trial {t.number}, {what}: {t.user_attrs['error']}")
    return [*lines, ""]


def _predictor_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    errs = [abs(r["error"]) for r in rows]
    lines = [
        "## Memory predictor",
        "",
        f"Predicted vs measured whole-process peak RSS over {len(rows)} trained genomes: "
        f"median |error| {statistics.median(errs):.1%}, max {max(errs):.1%}.",
        "",
        "| trial | spec | predicted peak (MB) | measured (MB) | error | predicted / measured above "
        "baseline (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['trial']} | {r['spec_id']} | {r['predicted_peak_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['error']:+.1%} | {r['predicted_above_mb']:.0f} / "
            f"{r['above_mb']:.0f} |"
        )
    return [*lines, ""]


def _final_lines(out, found_ids, records, budget_mb) -> list[str]:
    sides = front_stats(records, found_ids)
    ref = (0.0, budget_mb)
    lines = [
        "## Final round: test accuracy (mean over seeds) and memory",
        "",
        f"Reference point for the hypervolume: 0 % accuracy, {budget_mb:.0f} MB above baseline.",
        "",
    ]
    hv = {}
    for name, points in sides.items():
        hv[name], front = side_hypervolume(points, ref)
        lines.append(f"**{name}** front, hypervolume {hv[name]:.1f} (accuracy fraction × MB):")
        lines += [
            f"- {m}: {a:.1%} test accuracy, {mem:.0f} MB above baseline" for m, a, mem in front
        ]
        lines.append("")
    if hv.get("hand-made"):
        # the largest ratio any front could reach here: one model at 100 % in 0 MB
        lines.append(
            f"Found / hand-made hypervolume: {hv['found'] / hv['hand-made']:.2f}x (a perfect "
            f"model, 100 % in 0 MB, would reach {budget_mb / hv['hand-made']:.2f}x)."
        )
    _plot(out, sides)
    lines += ["", "![fronts](fronts.png)", "", "## Candidate specs", ""]
    specs = {r["model"]: r["config"]["model_args"] for r in records if r["model"] in found_ids}
    for sid in sorted({m for m, _, _ in sides["found"]}):
        lines += [f"### {sid}", "", "```json", json.dumps(specs[sid]), "```", ""]
    return lines


def _final_table(records: list[dict[str, Any]], found_ids: set[str], base: str) -> list[str]:
    """Every model of the final round, mean ± sd over seeds, memory relative to the space's base
    model (the hand design the search starts from)."""
    rows = [r for rows in summarize(records).values() for r in rows]
    base_mb = next((r.mean("peak_above_baseline_mb") for r in rows if r.model == base), None)
    lines = [
        "## Final round: every model",
        "",
        f"Mean ± sd over seeds; memory is peak training RSS above baseline, also as a share of "
        f"the base model {base or '-'}'s.",
        "",
        "| model | kind | seeds | test acc (%) | as trained (%) | peak − baseline (MB) | "
        "of base | s / epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r.mean("test_accuracy")):
        mem = r.mean("peak_above_baseline_mb")
        share = f"{mem / base_mb:.0%}" if base_mb else "-"
        lines.append(
            f"| {r.model} | {'found' if r.model in found_ids else 'hand-made'} | {r.n_runs} | "
            f"{format_stat(r.stats['test_accuracy'], 'percent')} | "
            f"{format_stat(r.stats['test_accuracy_as_trained'], 'percent')} | "
            f"{format_stat(r.stats['peak_above_baseline_mb'], 'number')} | {share} | "
            f"{r.mean('epoch_s'):.1f} |"
        )
    return [*lines, ""]


def _use_it_lines(out: Path, records: list[dict[str, Any]], found_ids: set[str]) -> list[str]:
    """Where each found model's trained runs are and the commands that deliver one. The run
    named is the one with the best validation accuracy (never chosen on test), the lowest
    seed on a tie."""
    lines = ["## Use it", ""]
    data = next((r["config"].get("data") for r in records), "DATA")
    for sid in sorted(found_ids):
        runs = [r for r in records if r["model"] == sid and r.get("run_dir")]
        if not runs:
            continue
        best = max(runs, key=lambda r: (r.get("val_accuracy") or 0.0, -r["config"]["seed"]))
        run = best["run_dir"]
        lines += [
            f"**{sid}**: {len(runs)} trained run(s); the best on validation is `{run}` (seed "
            f"{best['config']['seed']}, validation {100 * (best.get('val_accuracy') or 0):.1f} %).",
            "",
            "```sh",
            f"edgetrain export {run} --int8      # ONNX + sidecar + model card (README.md)",
            f"edgetrain predict {run}/model.onnx IMAGES_OR_FOLDERS",
            f"edgetrain train --model {out / 'specs' / (sid + '.json')} --data '{data}'",
            "```",
            "",
        ]
    return lines if len(lines) > 2 else []


def _plot(out: Path, sides: dict[str, list[tuple[str, float, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, points), marker in zip(sides.items(), ("o", "s"), strict=True):
        if points:
            ax.scatter([m for _, _, m in points], [a * 100 for _, a, _ in points], marker=marker,
                       label=name)  # fmt: skip
            for label, a, m in points:
                ax.annotate(
                    label, (m, a * 100), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
    ax.set_xlabel("peak training memory above baseline (MB)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fronts.png", dpi=120)
    plt.close(fig)
