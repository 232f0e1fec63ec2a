"""The `awm-jax` command line: `awm-jax tasks` (later issues add train and sweep)."""

from __future__ import annotations

import sys


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


def tasks() -> None:
    """List every control task: state/action/observation sizes, default horizon, step length dt, source."""
    import awm_envs

    print(format_table(awm_envs.table()))
    print(f"\n{len(awm_envs.names())} tasks. Observation = [distractors, state, t]; actions in [-1, 1].")


COMMANDS = {"tasks": tasks}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `awm-jax` console script."""
    import tyro

    argv = sys.argv[1:] if argv is None else argv
    tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="awm-jax")


if __name__ == "__main__":
    main()
