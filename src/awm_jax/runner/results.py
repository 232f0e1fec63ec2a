"""Writing a run's outputs atomically (config, per-seed metrics as CSV and JSON, a plot, a summary),
and reading them back with `read_run_files` (`awm_jax.load_run` adds the final train state).

Every file is written by `awm_jax.runner.run_folder.atomic_write` (a temporary name in the same folder,
then a rename), so a crash never leaves a half-written file behind.

Layout of a run folder (written in this order; the rules are in `awm_jax.runner.run_folder`):
    .lock           held by the process writing the folder
    config.json     the Config (written when the run starts)
    metrics.json    {"seeds": S, "periods": P, "metrics": {name: [[P values] per seed]}}
    metrics.csv     one row per (seed, period): seed, period, then every metric
    returns.png     eval/return vs env steps, mean and per seed (when matplotlib is installed)
    summary.txt     final eval return (mean, std, min, max over seeds), skipped non-finite updates per
                    seed, and a warning line when any were skipped
    final_state/    the final TrainState of every seed (orbax, with awm_sha256.json: awm_jax.runner.checkpoint;
                    written by `awm_jax.runner.run.run_training` after the small files, as it is the large one)
    COMPLETE        written last: the files above with their sha256

`awm_jax.load_run` (in `awm_jax.api`) reads all of it back, the final state included;
`read_run_files` here reads the files only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from awm_jax.core.config import Config
from awm_jax.runner import run_folder
from awm_jax.runner.plots import plot_learning_curves
from awm_jax.runner.run_folder import CONFIG, METRICS, DamagedError, atomic_write, read_json


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Render rows of dicts as an aligned plain-text table."""
    columns = columns or list(rows[0])
    cells = [[str(c) for c in columns]] + [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Render rows of dicts as a markdown (pipe) table; floats with 4 significant digits."""
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows])


def write_csv(path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Write rows of dicts as a CSV file (atomically); `columns` default to the first row's keys."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns or list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def metrics_to_numpy(metrics: dict) -> dict[str, np.ndarray]:
    """Metrics of a vmapped run -> {name: [seeds, periods] float64 arrays}."""
    out = {}
    for k, v in metrics.items():
        a = np.asarray(v, np.float64)
        out[k] = a.reshape(1, -1) if a.ndim == 1 else a
    return out


def summary(metrics: dict) -> dict:
    """Final eval return over seeds (mean, std, min, max, seeds) and `skipped`, the non-finite updates
    each seed skipped over the whole run (a list, one count per seed; zeros when the metric is absent)."""
    m = metrics_to_numpy(metrics)
    final = m["eval/return"][:, -1]
    skipped = m["skipped_updates"][:, -1] if "skipped_updates" in m else np.zeros_like(final)
    return dict(mean=float(final.mean()), std=float(final.std()), min=float(final.min()), max=float(final.max()),
                seeds=int(final.size), skipped=[int(x) for x in np.nan_to_num(skipped)])


def skipped_warning(skipped: list[int], what: str = "") -> str | None:
    """The warning line for per-seed skipped-update counts, or None when no update was skipped."""
    if not any(skipped):
        return None
    seeds = [i for i, n in enumerate(skipped) if n]
    return (f"WARNING: {what + ': ' if what else ''}{sum(skipped)} non-finite updates were skipped (seeds "
            f"{', '.join(map(str, seeds))}); those seeds trained on fewer updates than configured "
            "(skipped_updates in metrics.csv counts them per evaluation period)")


def summary_line(config, metrics: dict) -> str:
    """The summary: final eval return over seeds, skipped non-finite updates per seed and, when any
    were skipped, a warning line."""
    s = summary(metrics)
    text = (f"{config.task} {config.method}: final eval return {s['mean']:.4g} +- {s['std']:.3g} "
            f"(min {s['min']:.4g}, max {s['max']:.4g}, {s['seeds']} seeds); "
            f"skipped non-finite updates per seed: {' '.join(map(str, s['skipped']))}")
    warning = skipped_warning(s["skipped"])
    return text + ("\n" + warning if warning else "")


def write_run(out, config, metrics: dict, extra: dict | None = None) -> str:
    """Write config, metrics (CSV, JSON), plot and summary to folder `out`, then its COMPLETE marker
    recording them (see `awm_jax.runner.run_folder`); returns the summary text."""
    line, names = write_outputs(out, config, metrics, extra)
    run_folder.mark_complete(out, names)
    return line


def write_outputs(out, config, metrics: dict, extra: dict | None = None) -> tuple[str, list[str]]:
    """`write_run` without the marker: removes the folder's COMPLETE marker first, writes the files and
    returns (summary text, names written). `awm_jax.runner.run.run_training` marks the folder itself once the
    final state is saved too."""
    out = Path(out)
    run_folder.unmark(out)
    names = write_metrics(out, config, metrics, extra)
    m = metrics_to_numpy(metrics)
    seeds, periods = m["eval/return"].shape
    columns = sorted(m)
    lines = [",".join(["seed", "period"] + columns)]
    for s in range(seeds):
        for p in range(periods):
            lines.append(",".join([str(s), str(p)] + [repr(float(m[k][s, p])) for k in columns]))
    atomic_write(out / "metrics.csv", "\n".join(lines) + "\n")
    names.append("metrics.csv")
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # e.g. a GPU image without it: every other output is still written
        print("[awm-jax] matplotlib is not installed: returns.png not drawn")
    else:
        plot_returns(out / "returns.png", m, title=f"{config.task} / {config.method}",
                     warmup_steps=config.warmup_steps, label=config.method)
        names.append("returns.png")
    line = summary_line(config, metrics)
    atomic_write(out / "summary.txt", line + "\n")
    names.append("summary.txt")
    return line, names


def write_metrics(out, config, metrics: dict, extra: dict | None = None) -> list[str]:
    """config.json and metrics.json (what `read_run_files` reads) in folder `out`; returns their names."""
    out = Path(out)
    m = metrics_to_numpy(metrics)
    seeds, periods = m["eval/return"].shape
    atomic_write(out / CONFIG, json.dumps(config.resolved().to_dict(), indent=2))
    payload = {"seeds": seeds, "periods": periods, "metrics": {k: v.tolist() for k, v in m.items()}, **(extra or {})}
    atomic_write(out / METRICS, json.dumps(payload))
    return [CONFIG, METRICS]


def plot_returns(path, m: dict, title: str = "", warmup_steps: int | None = None, label: str = "return") -> None:
    """Eval return vs env steps of one run, in the style of every learning curve (`awm_jax.runner.plots`)."""
    plot_learning_curves(path, [(label, m["eval/env_steps"][0], m["eval/return"])], title=title,
                         warmup_steps=warmup_steps)


def read_config(path):
    """A run folder's config.json as a Config; a file that is not one raises DamagedError naming it."""
    try:
        return Config.from_dict(read_json(Path(path) / CONFIG, "config"))
    except TypeError as e:
        raise DamagedError(f"{Path(path) / 'config.json'}: not a run configuration ({e})") from None


def read_run_files(path) -> tuple:
    """Read a run folder's files back: (Config, {name: [seeds, periods] float64 arrays}).
    `awm_jax.load_run` also checks the COMPLETE marker and restores the final train state."""
    path = Path(path)
    config = read_config(path)
    payload = read_json(path / METRICS, "metrics file")
    if not isinstance(payload, dict) or "metrics" not in payload:
        raise DamagedError(f"{path / 'metrics.json'}: no 'metrics' in it: not a metrics file of awm_jax")
    return config, {k: np.asarray(v) for k, v in payload["metrics"].items()}
