"""Writing a run's outputs atomically (config, per-seed metrics as CSV and JSON, a plot, a summary),
and reading them back with `read_run_files` (`awm_jax.load_run` adds the final train state).

Every file is written to a temporary name in the same folder and then renamed, so a crash never
leaves a half-written file behind.

Layout of a run folder:
    config.json     the Config
    metrics.json    {"seeds": S, "periods": P, "metrics": {name: [[P values] per seed]}}
    metrics.csv     one row per (seed, period): seed, period, then every metric
    returns.png     eval/return vs env steps, mean and per seed (when matplotlib is installed)
    summary.txt     the summary line (final eval return: mean, std, min, max over seeds)
    final_state/    the final TrainState of every seed (orbax; written by `awm_jax.run.run_training`)

`awm_jax.load_run` (in `awm_jax.api`) reads all of it back, the final state included;
`read_run_files` here reads the files only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write(path, data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def metrics_to_numpy(metrics: dict) -> dict[str, np.ndarray]:
    """Metrics of a vmapped run -> {name: [seeds, periods] float64 arrays}."""
    out = {}
    for k, v in metrics.items():
        a = np.asarray(v, np.float64)
        out[k] = a.reshape(1, -1) if a.ndim == 1 else a
    return out


def summary(metrics: dict) -> dict:
    final = metrics_to_numpy(metrics)["eval/return"][:, -1]
    return dict(mean=float(final.mean()), std=float(final.std()), min=float(final.min()), max=float(final.max()),
                seeds=int(final.size))


def summary_line(config, metrics: dict) -> str:
    s = summary(metrics)
    return (f"{config.task} {config.method}: final eval return {s['mean']:.4g} +- {s['std']:.3g} "
            f"(min {s['min']:.4g}, max {s['max']:.4g}, {s['seeds']} seeds)")


def write_run(out, config, metrics: dict, extra: dict | None = None) -> str:
    """Write config, metrics (CSV, JSON), plot and summary to folder `out`; returns the summary line."""
    out = Path(out)
    m = metrics_to_numpy(metrics)
    seeds, periods = m["eval/return"].shape
    atomic_write(out / "config.json", json.dumps(config.to_dict(), indent=2))
    payload = {"seeds": seeds, "periods": periods, "metrics": {k: v.tolist() for k, v in m.items()}, **(extra or {})}
    atomic_write(out / "metrics.json", json.dumps(payload))
    names = sorted(m)
    lines = [",".join(["seed", "period"] + names)]
    for s in range(seeds):
        for p in range(periods):
            lines.append(",".join([str(s), str(p)] + [repr(float(m[k][s, p])) for k in names]))
    atomic_write(out / "metrics.csv", "\n".join(lines) + "\n")
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # e.g. a GPU image without it: every other output is still written
        print("[awm-jax] matplotlib is not installed: returns.png not drawn")
    else:
        plot_returns(out / "returns.png", m, title=f"{config.task} / {config.method}")
    line = summary_line(config, metrics)
    atomic_write(out / "summary.txt", line + "\n")
    return line


def new_figure(figsize=(6, 4)):
    """A matplotlib figure and axes outside pyplot: nothing is shown, and the global backend is left
    alone (a notebook keeps drawing inline)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot()


def save_figure(fig, path) -> None:
    """Render `fig` to PNG and write it atomically (closing it if pyplot manages it)."""
    import io
    import sys

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    atomic_write(path, buf.getvalue())


def plot_returns(path, m: dict, title: str = "") -> None:
    """Eval return vs env steps: thin lines per seed, a thick mean line."""

    steps, ret = m["eval/env_steps"][0], m["eval/return"]
    fig, ax = new_figure()
    for r in ret:
        ax.plot(steps, r, color="tab:blue", alpha=0.3, lw=0.8)
    ax.plot(steps, ret.mean(0), color="tab:blue", lw=2, label=f"mean of {len(ret)} seeds")
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path)


FINAL_STATE = "final_state"


def save_state(path, state) -> None:
    """Write a (vmapped) train state with orbax to folder `path`, replacing an older one. Orbax writes to
    a temporary folder and renames it when complete, so a crash leaves the old state or none."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ck:
        ck.save(Path(path).absolute(), state, force=True)
        ck.wait_until_finished()


def restore_state(path, abstract):
    """Read a state written by `save_state` into the structure of `abstract` (arrays or
    jax.ShapeDtypeStruct leaves, e.g. from `jax.eval_shape`), onto the first local device."""
    import jax
    import orbax.checkpoint as ocp

    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=one), abstract)
    with ocp.StandardCheckpointer() as ck:
        return ck.restore(Path(path).absolute(), target)


def read_run_files(path) -> tuple:
    """Read a run folder's files back: (Config, {name: [seeds, periods] float64 arrays}).
    `awm_jax.load_run` also restores the final train state."""
    from awm_jax.config import Config

    path = Path(path)
    config = Config.from_dict(json.loads((path / "config.json").read_text()))
    payload = json.loads((path / "metrics.json").read_text())
    return config, {k: np.asarray(v) for k, v in payload["metrics"].items()}
