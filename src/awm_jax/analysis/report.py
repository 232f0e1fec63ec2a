"""Scores, tables and figures of an experiment kept as data (`awm_jax.analysis.committed`), from its data folder
alone: nothing is trained and no reference is recomputed.

    scores.csv       one row per (setting,) task, method and seed: task, method, seed (the index in the
                     group: key `seed` of split(PRNGKey(config.seed), seeds)), the setting's columns
                     (horizon; distractor_dims, state_noise), total_steps (configured), env_steps
                     (taken by the final evaluation), final_return, score
    aggregate.csv    per setting and method: tasks, seeds, IQM and mean score over tasks x seeds with
                     stratified-bootstrap 95% CIs (rliable; `benchmark.aggregate`)
    improvement.csv  per setting and method: rliable's probability that `reference` (the method the
                     experiment names) improves on it, with its 95% CI, over the tasks both have
    per_task.csv     per setting, task and method: seeds, final return and score (mean and std over seeds)
    change.csv       with a `baseline` setting (the shortest horizon; no perturbation), per other setting
                     and method: the change of its mean score from the baseline, averaged over tasks, and
                     how much less `reference` loses than the method (its change minus the method's), each
                     with a 95% bootstrap CI that resamples every group's seeds (`benchmark.mean_contrast`)
    tables.md        those tables in markdown, and the groups missing from the data folder

score = (final_return - random) / (best - random) with the task's references from
[setting/]references.json (`benchmark.normalized_score`). Any subset of the groups may be present:
the absent ones are listed as missing. Where a method has fewer seeds on some task, its aggregate uses
the first `seeds` (the fewest) of every task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from awm_jax.analysis.benchmark import aggregate, mean_contrast, normalized_score, probability_of_improvement
from awm_jax.analysis.committed import GROUP_FILES, PARTS
from awm_jax.runner.plots import SCORE, plot_learning_curves
from awm_jax.runner.results import markdown_table, read_run_files, write_csv
from awm_jax.runner.run_folder import DamagedError, atomic_write, check_complete, group_name, is_complete, read_json


def _parts_note(folder: Path, task: str, method: str) -> str:
    """', seeds 0, 2 committed as parts' when a missing group is being trained in seed parts, else ''."""
    done = sorted(int(p.name[4:]) for p in (folder / PARTS / group_name(task, method)).glob("seed*")
                  if p.name[4:].isdigit() and is_complete(p))
    return f" (seed{'s' * (len(done) > 1)} {', '.join(map(str, done))} committed as parts)" if done else ""


def read_scores(data, settings, tasks, methods, streams: bool = False) -> tuple[dict, dict, list]:
    """Read every committed group of (settings x tasks x methods) in `data`: ({setting folder: score
    rows}, {(folder, task, method): (env steps [P], normalised returns [seeds, P])}, missing
    [(setting, task, method)]). streams: each row's seed is its random stream "base:member" (the group's
    config.seed and the index), not the index alone."""
    by_setting, curves, missing = {}, {}, []
    for s in settings:
        folder = Path(data) / s.folder
        refs = read_json(folder / "references.json", "references")["tasks"] if (folder / "references.json").exists() \
            else {}
        rows = by_setting[s.folder] = []
        for t in tasks:
            for m in methods:
                g = folder / group_name(t, m)
                if not is_complete(g):
                    missing.append((s, t, m))
                    continue
                check_complete(g, verify=GROUP_FILES)
                if t not in refs:
                    raise DamagedError(f"{g} is committed but {folder / 'references.json'} has no references for {t}")
                cfg, metrics = read_run_files(g)
                seeds = [f"{cfg.seed}:{i}" if streams else i for i in range(len(metrics["eval/return"]))]
                group, curves[(s.folder, t, m)] = group_rows(t, m, seeds, cfg.total_steps, metrics["eval/env_steps"],
                                                             metrics["eval/return"], refs[t], s.columns)
                rows += group
    return by_setting, curves, missing


def group_rows(task: str, method: str, seeds, total_steps: int, steps, ret, refs: dict, columns=()):
    """(score rows, curve) of one committed group: per seed (its label in `seeds`), the returns `ret`
    [seeds, P] at env steps `steps` ([seeds, P] or [P]) normalised on the task's references {random, best};
    the curve is (env steps [P], normalised returns [seeds, P])."""
    ret = np.asarray(ret)
    steps = np.broadcast_to(np.asarray(steps), ret.shape)
    norm = normalized_score(ret, refs["random"], refs["best"])
    rows = [dict(task=task, method=method, seed=seed, **dict(columns), total_steps=total_steps,
                 env_steps=int(steps[i, -1]), final_return=float(ret[i, -1]), score=float(norm[i, -1]))
            for i, seed in enumerate(seeds)]
    return rows, (steps[0], norm)


def score_matrix(rows, method, tasks=None) -> tuple[list, np.ndarray]:
    """(tasks, [seeds, tasks] scores) of `method` in `rows`, over `tasks` (default: every task it has),
    with as many seeds as its task with the fewest."""
    per = {}
    for r in rows:
        if r["method"] == method and (tasks is None or r["task"] in tasks):
            per.setdefault(r["task"], []).append(r["score"])
    order = [t for t in (tasks if tasks is not None else per) if t in per]
    runs = min(len(per[t]) for t in order)
    return order, np.array([per[t][:runs] for t in order], np.float64).T


def aggregate_rows(by_setting, settings, methods, reps: int = 2000) -> list[dict]:
    """Per setting and method present: {columns, method, tasks, seeds, iqm, iqm_lo, iqm_hi, mean,
    mean_lo, mean_hi}."""
    out = []
    for s in settings:
        rows = by_setting[s.folder]
        mats = {m: score_matrix(rows, m) for m in methods if any(r["method"] == m for r in rows)}
        agg = aggregate({m: x for m, (_, x) in mats.items()}, reps=reps) if mats else {}
        out += [dict(**dict(s.columns), method=m, tasks=len(ts), seeds=len(x), **agg[m]) for m, (ts, x) in mats.items()]
    return out


def improvement_rows(by_setting, settings, methods, reference: str, reps: int = 2000) -> list[dict]:
    """Per setting and method present with `reference`: {columns, method, tasks, p_improve, p_lo, p_hi},
    rliable's probability that `reference` improves on the method over the tasks both have."""
    out = []
    for s in settings:
        rows = by_setting[s.folder]
        have = lambda m, rows=rows: {r["task"] for r in rows if r["method"] == m}
        pairs, n = {}, {}
        for m in methods:
            common = [t for t in dict.fromkeys(r["task"] for r in rows) if t in have(m) and t in have(reference)]
            if m != reference and common:
                pairs[m] = (score_matrix(rows, reference, common)[1], score_matrix(rows, m, common)[1])
                n[m] = len(common)
        p = probability_of_improvement(pairs, reps=reps) if pairs else {}
        out += [dict(**dict(s.columns), method=m, tasks=n[m], **p[m]) for m in pairs]
    return out


def change_rows(by_setting, settings, baseline, methods, reference: str, reps: int = 2000) -> list[dict]:
    """Per setting other than `baseline` and method with data in both: {columns, method, tasks, change,
    change_lo, change_hi, vs_tasks, vs_reference, vs_lo, vs_hi}. change: the mean over the tasks the method
    has in both settings of (its mean score over seeds in the setting - in the baseline); vs_reference:
    `reference`'s change minus the method's over the tasks both have in both settings (> 0: the reference
    loses less; None for the reference itself). 95% CIs from `mean_contrast`."""
    def seeds(folder, t, m):
        return [r["score"] for r in by_setting[folder] if r["task"] == t and r["method"] == m]

    def tasks_of(folder, m):
        return [t for t in dict.fromkeys(r["task"] for r in by_setting[folder]) if seeds(folder, t, m)]

    def terms(folder, tasks, m, sign=1.0):
        return [(sign * w / len(tasks), seeds(f, t, m)) for t in tasks for w, f in ((1, folder), (-1, baseline.folder))]

    out = []
    for s in settings:
        if s.folder == baseline.folder:
            continue
        ref = set(tasks_of(s.folder, reference)) & set(tasks_of(baseline.folder, reference))
        for m in methods:
            common = [t for t in tasks_of(s.folder, m) if t in tasks_of(baseline.folder, m)]
            if not common:
                continue
            c = mean_contrast(terms(s.folder, common, m), reps=reps)
            row = dict(**dict(s.columns), method=m, tasks=len(common), change=c["value"], change_lo=c["lo"],
                       change_hi=c["hi"], vs_tasks=None, vs_reference=None, vs_lo=None, vs_hi=None)
            both = [t for t in common if t in ref]
            if m != reference and both:
                v = mean_contrast(terms(s.folder, both, reference) + terms(s.folder, both, m, -1.0), reps=reps)
                row.update(vs_tasks=len(both), vs_reference=v["value"], vs_lo=v["lo"], vs_hi=v["hi"])
            out.append(row)
    return out


def per_task_rows(by_setting, settings, tasks, methods) -> list[dict]:
    """Per setting, task and method present: {columns, task, method, seeds, return_mean, return_std,
    score_mean, score_std} (std over seeds)."""
    out = []
    for s in settings:
        for t in tasks:
            for m in methods:
                g = [r for r in by_setting[s.folder] if r["task"] == t and r["method"] == m]
                if g:
                    ret, sc = np.array([r["final_return"] for r in g]), np.array([r["score"] for r in g])
                    out.append(dict(**dict(s.columns), task=t, method=m, seeds=len(g), return_mean=float(ret.mean()),
                                    return_std=float(ret.std()), score_mean=float(sc.mean()),
                                    score_std=float(sc.std())))
    return out


def _md(rows: list[dict], none: str = "no committed groups yet") -> str:
    return markdown_table(rows) if rows else f"({none})"


def write_report(data, settings, tasks, methods, title: str, command: str, reference: str,
                 reps: int = 2000, baseline=None, streams: bool = False, notes: tuple = (), read=None) -> dict:
    """Write scores.csv, aggregate.csv, improvement.csv, per_task.csv, with a `baseline` setting (one of
    `settings`) change.csv, and tables.md to `data` from its committed groups; returns {'by_setting',
    'curves', 'missing', 'aggregate', 'improvement', 'per_task', 'change'}. streams: scores.csv's seed is
    the stream "base:member" (`read_scores`); notes: paragraphs put under the title of tables.md; read: what
    reads the groups, with `read_scores`' arguments and result (default: `read_scores`), for an experiment
    whose methods include one trained outside `make_train`."""
    data = Path(data)
    by_setting, curves, missing = (read or read_scores)(data, settings, tasks, methods, streams)
    cols = list(dict(settings[0].columns))
    scores = [r for s in settings for r in by_setting[s.folder]]
    write_csv(data / "scores.csv", scores, ["task", "method", "seed", *cols, "total_steps", "env_steps",
                                            "final_return", "score"])
    agg = aggregate_rows(by_setting, settings, methods, reps)
    imp = improvement_rows(by_setting, settings, methods, reference, reps)
    per = per_task_rows(by_setting, settings, tasks, methods)
    chg = change_rows(by_setting, settings, baseline, methods, reference, reps) if baseline is not None else None
    if chg is not None:
        write_csv(data / "change.csv", chg, cols + ["method", "tasks", "change", "change_lo", "change_hi", "vs_tasks",
                                                   "vs_reference", "vs_lo", "vs_hi"])
    for stem, rows, keys in (("aggregate", agg, ["method", "tasks", "seeds", "iqm", "iqm_lo", "iqm_hi", "mean",
                                                  "mean_lo", "mean_hi"]),
                             ("improvement", imp, ["method", "tasks", "p_improve", "p_lo", "p_hi"]),
                             ("per_task", per, ["task", "method", "seeds", "return_mean", "return_std", "score_mean",
                                                "score_std"])):
        write_csv(data / f"{stem}.csv", rows, cols + keys)
    total = len(settings) * len(tasks) * len(methods)
    where = lambda s: f"{s.folder}/" if s.folder else ""
    uneven = any(len({r["tasks"] for r in agg if all(r[c] == v for c, v in s.columns)}) > 1 for s in settings)
    lines = [f"# {title}", "", f"Regenerated from the committed groups alone by `{command}`.",
             *[x for n in notes for x in ("", n)],
             f"{total - len(missing)} of {total} {'setting, ' * bool(cols)}task, method groups are committed"
             + (f"; {len(missing)} missing (listed at the end)." if missing else "."), "",
             "Normalised score: (final return - random) / (best - random), random policy 0, best reference 1 "
             "(references.json).", "",
             "## Aggregate over tasks x seeds (rliable IQM and mean, stratified-bootstrap 95% CIs)", "",
             _md([{**{c: r[c] for c in cols}, "method": r["method"], "tasks": r["tasks"], "seeds": r["seeds"],
                   "IQM (95% CI)": f"{r['iqm']:.3f} ({r['iqm_lo']:.3f} to {r['iqm_hi']:.3f})",
                   "mean (95% CI)": f"{r['mean']:.3f} ({r['mean_lo']:.3f} to {r['mean_hi']:.3f})"} for r in agg]), "",
             *["Methods cover different tasks (column tasks) while groups are missing: their aggregates are not "
               "comparable yet.", ""] * uneven,
             f"## Probability that {reference} improves on each method (rliable, 95% CI, over the tasks both have)", "",
             _md([{**{c: r[c] for c in cols}, "method": r["method"], "tasks": r["tasks"],
                   f"P({reference} > method) (95% CI)": f"{r['p_improve']:.3f} ({r['p_lo']:.3f} to {r['p_hi']:.3f})"}
                  for r in imp], f"no method shares a task with {reference} yet"), "",
             "## Per task (normalised score, mean +- std over seeds; final return in per_task.csv)", "",
             _md(_per_task_grid(per, settings, tasks, methods, cols) if per else []), "",
             *(_change_section(chg, baseline, cols, reference) if chg is not None else []),
             "## Missing groups", "",
             "\n".join(f"- {where(s)}{group_name(t, m)}{_parts_note(data / s.folder, t, m)}" for s, t, m in missing)
             or "none", ""]
    atomic_write(data / "tables.md", "\n".join(lines))
    return dict(by_setting=by_setting, curves=curves, missing=missing, aggregate=agg, improvement=imp, per_task=per,
                change=chg)


def _change_section(chg, baseline, cols, reference) -> list[str]:
    """tables.md's section on the change of each method's score from the baseline setting."""
    ci = lambda v, lo, hi: f"{v:+.3f} ({lo:+.3f} to {hi:+.3f})"
    at = ", ".join(f"{c} {v:g}" for c, v in baseline.columns)
    rows = [{**{c: r[c] for c in cols}, "method": r["method"], "tasks": r["tasks"],
             f"change from {at} (95% CI)": ci(r["change"], r["change_lo"], r["change_hi"]),
             f"{reference}'s change minus the method's (95% CI)":
                 "-" if r["vs_reference"] is None else ci(r["vs_reference"], r["vs_lo"], r["vs_hi"])
                 + (f", {r['vs_tasks']} tasks" if r["vs_tasks"] != r["tasks"] else "")} for r in chg]
    return [f"## Change of the score from {at} (mean over tasks of the change of the seed-mean score; 95% "
            "bootstrap CIs, every group's seeds resampled)", "",
            f"The last column above 0: {reference} loses less (or gains more) than the method; its CI decides it.", "",
            _md(rows, f"no method has groups at {at} and another setting yet"), ""]


def _per_task_grid(per, settings, tasks, methods, cols) -> list[dict]:
    """One row per (setting,) task, one column per method: 'mean +- std' of the score, '-' if missing."""
    cell = {(tuple(r[c] for c in cols), r["task"], r["method"]): f"{r['score_mean']:.3f} +- {r['score_std']:.3f}"
            for r in per}
    out = []
    for s in settings:
        key = tuple(dict(s.columns)[c] for c in cols)
        for t in tasks:
            out.append({**dict(s.columns), "task": t, **{m: cell.get((key, t, m), "-") for m in methods}})
    return out


def plot_curves(curves: dict, folder: str, tasks, methods, out, warmup_steps: int | None = None) -> list[Path]:
    """Per task, normalised eval return vs env steps of each method present (median and interquartile band
    over seeds, `awm_jax.runner.plots`; the random policy at 0, the best plan at 1; `warmup_steps` shaded):
    OUT/curves_{task}.png; returns the paths written."""
    paths = []
    for t in tasks:
        present = [m for m in methods if (folder, t, m) in curves]
        if not present:
            continue
        paths.append(Path(out) / f"curves_{t}.png")
        plot_learning_curves(paths[-1], [(m, *curves[(folder, t, m)]) for m in present], title=t, ylabel=SCORE,
                             references={"random policy": 0.0, "best plan": 1.0}, warmup_steps=warmup_steps)
    return paths
