"""Figures: `new_figure` and `save_figure` (a matplotlib figure outside pyplot, written atomically), which
every figure of awm_jax and its experiments uses, and learning curves in one style: the quickstart's, a
run's returns.png, a sweep's per-task plots, the benchmark's per-task curves and the notebooks' curves all
come from `draw_learning_curves` (`plot_learning_curves` writes its figure to a file). matplotlib is
imported only when a figure is drawn.

The style: per method the median over seeds as a line and the interquartile range as a band (a band
from the seeds' own quantiles never reaches past the best or worst seed, so it never claims a return no
seed reached; mean +- std can); with few seeds and few methods each seed also gets a thin line. Reference
lines where they are known (a random policy, the best plan), the warm-up shaded and labelled, axes named
with their units.
"""

from __future__ import annotations

import io
import sys

import numpy as np

from awm_jax.runner.run_folder import atomic_write

ENV_STEPS = "env steps (real environment interactions)"
RETURN = "evaluation return (one episode, undiscounted)"
SCORE = "normalised return (random policy 0, best plan 1)"
REFERENCE_STYLE = {"random policy": dict(color="0.45", ls=":"), "best constant action": dict(color="0.3", ls="-."),
                   "best plan": dict(color="k", ls="--")}


def new_figure(figsize=(6, 4)):
    """A matplotlib figure and axes outside pyplot: nothing is shown, and the global backend is left
    alone (a notebook keeps drawing inline)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot()


def save_figure(fig, path) -> None:
    """Render `fig` to PNG and write it atomically (closing it if pyplot manages it)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    atomic_write(path, buf.getvalue())


def plot_learning_curves(path, curves, title: str = "", ylabel: str = RETURN, references: dict | None = None,
                         warmup_steps: int | None = None, seed_lines: bool | None = None) -> None:
    """Write a PNG to `path` of `draw_learning_curves` (its arguments), sized for the number of curves."""
    fig, ax = new_figure((8.4, 4.4) if len(curves) > 6 else (6.4, 4.2))  # > 6: the legend goes beside the axes
    draw_learning_curves(ax, curves, title, ylabel, references, warmup_steps, seed_lines)
    save_figure(fig, path)


def draw_learning_curves(ax, curves, title: str = "", ylabel: str = RETURN, references: dict | None = None,
                         warmup_steps: int | None = None, seed_lines: bool | None = None, colors=None,
                         legend: bool = True) -> None:
    """Draw learning curves on matplotlib axes `ax` (a notebook's, or one panel of a larger figure): `curves`
    is a list of (label, env steps [periods], values [seeds, periods]); `references` {name: value} draws
    horizontal lines (names of `REFERENCE_STYLE` get its style); `warmup_steps` shades [0, warmup_steps];
    `seed_lines` draws each seed thinly (default: when there are at most 3 curves of at most 8 seeds);
    `colors`: one per curve (default: matplotlib's cycle, tab20 past 10 curves); `legend`: draw one."""
    curves = [(label, np.asarray(x, float), np.atleast_2d(np.asarray(y, float))) for label, x, y in curves]
    many = len(curves) > 6  # the legend goes beside the axes, and past 10 curves the colours come from tab20
    colors = _colors(len(curves)) if colors is None else list(colors)
    if seed_lines is None:
        seed_lines = len(curves) <= 3 and all(len(y) <= 8 for _, _, y in curves)
    if warmup_steps:
        ax.axvspan(0, warmup_steps, color="0.92", zorder=0)
        ax.text(warmup_steps / 2, 0.02, "warm-up", transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=8, color="0.35")
    for i, (label, x, y) in enumerate(curves):
        color = colors[i]
        finite = np.where(np.isfinite(y), y, np.nan)
        median = np.nanmedian(finite, axis=0)
        lo, hi = np.nanpercentile(finite, [25, 75], axis=0)
        if seed_lines:
            for seed in finite:
                ax.plot(x, seed, color=color, lw=0.7, alpha=0.45)
        if len(y) > 1:
            ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
        ax.plot(x, median, color=color, lw=2, label=f"{label} ({len(y)} seeds)")
    for name, value in (references or {}).items():
        if value is not None and np.isfinite(value):
            ax.axhline(value, lw=1, label=f"{name} ({value:.4g})", **REFERENCE_STYLE.get(name, dict(color="0.5")))
    ax.set_xlim(left=0)
    ax.set_xlabel(ENV_STEPS)
    ax.set_ylabel(ylabel)
    spread = "median, interquartile band" + (", thin lines: seeds" if seed_lines else "")
    ax.set_title(f"{title}\n{spread}" if title else spread, fontsize=10)
    if legend and many:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    elif legend:
        ax.legend(fontsize=7, loc="best")


def _colors(n: int) -> list:
    """n distinct colours: matplotlib's default cycle up to 10, tab20 beyond."""
    import matplotlib

    palette = matplotlib.colormaps["tab10" if n <= 10 else "tab20"].colors
    return [palette[i % len(palette)] for i in range(n)]
