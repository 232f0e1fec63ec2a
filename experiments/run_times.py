"""What the experiments kept as data cost, read from their committed metrics.json: per group the machine
it ran on and its wall seconds (compiling and training), per data folder, setting and method the totals.

    python experiments/run_times.py --data docs/data/myriad_benchmark docs/data/horizon_scaling docs/data/robustness

Writes DATA/run_times.csv (one row per committed group, seed parts and copies moved aside left out) in
each data folder and prints a table per folder with its total. The times are wall seconds: on a shared
machine they include the other work's share. A group's `run_seconds` covers `timed_periods` of its
periods: a run resumed from a checkpoint times only the periods it ran after resuming (its row's
timed_periods is below its periods; the table counts it as "partly timed"); a group written before
metrics.json recorded `timed_periods` (1 December 2026), or merged from seed parts of which one did not,
has an empty `timed_periods` and may be partial without saying so. The machine (platform, devices, CPU
model and cores) is recorded since 1 December 2026; older groups leave it empty.
"""

import argparse
from pathlib import Path

from awm_jax.analysis.committed import committed_groups
from awm_jax.runner.results import write_csv
from awm_jax.runner.run_folder import METRICS, read_json

COLUMNS = ("setting", "task", "method", "seeds", "seed_parts", "periods", "timed_periods", "compile_seconds",
           "run_seconds", "machine")


def machine_name(m) -> str:
    """A recorded machine in words ("cpu: AMD EPYC, 2 cores"; "gpu: 1 x NVIDIA H200"); a list of them
    (seed parts that ran on different machines) joined by " / "; "" where none was recorded."""
    if not m:
        return ""
    if isinstance(m, list):
        return " / ".join(machine_name(x) for x in m)
    if m.get("platform") == "cpu":
        return f"cpu: {m.get('cpu_model') or 'unknown model'}, {m.get('cpu_count')} cores"
    return f"{m.get('platform')}: {m.get('devices')} x {m.get('device_kind')}"


def group_rows(data) -> list[dict]:
    """One row per committed group under `data` (COLUMNS), in folder order."""
    rows = []
    for setting, folder, cfg in committed_groups(data):
        payload = read_json(folder / METRICS, "metrics file")
        rows.append(dict(setting=setting, task=cfg.task, method=cfg.method, seeds=payload["seeds"],
                         seed_parts=payload.get("seed_parts", ""), periods=payload["periods"],
                         timed_periods=payload.get("timed_periods", ""),
                         compile_seconds=float(payload.get("compile_seconds", 0.0)),
                         run_seconds=float(payload.get("run_seconds", 0.0)),
                         machine=machine_name(payload.get("machine"))))
    return rows


def totals(rows) -> list[dict]:
    """Per setting and method (in first-seen order): groups, seeds, compile and run seconds summed, the
    groups timed in part, and the machines named."""
    out: dict = {}
    for r in rows:
        t = out.setdefault((r["setting"], r["method"]), dict(setting=r["setting"], method=r["method"], groups=0,
                                                              seeds=0, compile_seconds=0.0, run_seconds=0.0,
                                                              partial=0, machines=[]))
        t["groups"] += 1
        t["seeds"] += r["seeds"]
        t["compile_seconds"] += r["compile_seconds"]
        t["run_seconds"] += r["run_seconds"]
        t["partial"] += r["timed_periods"] != "" and r["timed_periods"] < r["periods"]
        if r["machine"] and r["machine"] not in t["machines"]:
            t["machines"].append(r["machine"])
    return list(out.values())


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def markdown(data, rows) -> str:
    sums = totals(rows)
    lines = [f"{data}: {len(rows)} groups, {_hours(sum(r['compile_seconds'] + r['run_seconds'] for r in rows))} "
             "wall hours (compile + run)", "",
             "| setting | method | groups | seeds | compile h | run h | partly timed | machine |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {t['setting'] or '-'} | {t['method']} | {t['groups']} | {t['seeds']} | "
              f"{_hours(t['compile_seconds'])} | {_hours(t['run_seconds'])} | {t['partial'] or ''} | "
              f"{' / '.join(t['machines']) or 'not recorded'} |" for t in sums]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True, help="data folders of committed groups (docs/data/...)")
    args = ap.parse_args(argv)
    missing = [d for d in args.data if not Path(d).is_dir()]
    if missing:
        ap.error(f"--data {' '.join(missing)}: no such folder")
    out = {}
    for d in args.data:
        rows = out[d] = group_rows(d)
        if not rows:
            ap.error(f"--data {d}: no committed group in it")
        write_csv(Path(d) / "run_times.csv", rows, COLUMNS)
        print(markdown(d, rows), end="\n\n")
    return out


if __name__ == "__main__":
    main()
