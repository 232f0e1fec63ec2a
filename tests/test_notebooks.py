"""The notebooks in experiments/notebooks run end to end in quick mode (their stored parameter cell,
`QUICK = True`) under nbmake; a failing cell fails the test.

Each notebook runs in its own `python -m pytest --nbmake` subprocess (a fresh kernel, the stored
notebook left untouched); its wall time is printed and recorded as the test property `seconds`.
Timings on the 2-core development CPU (shared with other jobs, so upper bounds): quickstart 88-205 s,
gradients 194-238 s, paper figures 196-232 s, mostly XLA compilation. The quickstart runs by default;
the other two are marked slow (`python -m pytest -m slow tests/test_notebooks.py`).
Set AWM_NOTEBOOK_FIGURES=DIR to keep each notebook's main figure as a PNG in DIR.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "experiments" / "notebooks"


def run_nbmake(path: Path, timeout: int = 1800):
    """Run one notebook with nbmake in a subprocess: (return code, output, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbmake", f"--nbmake-timeout={timeout}", "-q",
                           "-p", "no:cacheprovider", "-o", "addopts=", str(path)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                          cwd=path.parent, timeout=timeout + 120)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


@pytest.mark.parametrize("name", [
    pytest.param("01_quickstart.ipynb", marks=pytest.mark.slow),  # ~1-2 min each: keeps the default run short
    pytest.param("02_gradients.ipynb", marks=pytest.mark.slow),
    pytest.param("03_paper_figures.ipynb", marks=pytest.mark.slow),
])
def test_notebook_runs_in_quick_mode(name, record_property, capsys):
    path = NOTEBOOKS / name
    book = json.loads(path.read_text())
    code = [c for c in book["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "stored with outputs"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert params and "QUICK = True" in "".join(params[0]["source"]), "needs a parameter cell with QUICK = True"
    rc, out, seconds = run_nbmake(path)
    record_property("seconds", round(seconds, 1))
    with capsys.disabled():
        print(f"\n[notebooks] {name}: {seconds:.0f} s")
    assert rc == 0, f"{name} failed (rc {rc}):\n{out[-6000:]}"


def test_a_failing_cell_fails(tmp_path):
    book = {"cells": [{"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [],
                       "source": "x = 1"},
                      {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [],
                       "source": "raise RuntimeError('this cell fails')"}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "failing.ipynb"
    path.write_text(json.dumps(book))
    rc, out, _ = run_nbmake(path, timeout=120)
    assert rc != 0 and "this cell fails" in out
