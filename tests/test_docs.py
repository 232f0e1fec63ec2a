"""The documentation stays true: claims.md is what claims.csv generates, every link and repository path
named in README.md and docs/ exists, and the extending guide's worked examples run."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Folders a long-running job writes while the docs are checked: their generated pages are not ours to hold.
SKIP = (ROOT / "docs" / "data" / "fair_benchmark",)


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "experiments" / "README.md"]
    files += [p for p in sorted((ROOT / "docs").rglob("*.md")) if not any(s in p.parents for s in SKIP)]
    return files


def test_claims_md_is_generated_from_claims_csv():
    """`python experiments/claims.py --check` passes: edit docs/results/claims.csv, then regenerate."""
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "claims.py"), "--check"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
# a repository path: starts with one of the top folders, made of path characters
REPO_PATH = re.compile(r"(?<![\w/.$-])((?:docs|experiments|src|envs|tests|\.ci)/[\w./{}*-]*"
                       r"|awm_(?:jax|envs)/[\w./{}*-]+)")
PLACEHOLDER = re.compile(r"[{}*<>\[\]]|\.\.\.|(^|/)(T|M|DATA|OUT|NAME|DIR)(/|$|[-_.])")


def named_paths(text: str):
    """(kind, target) for every markdown link and every repository path the text names."""
    for m in LINK.finditer(text):
        yield "link", m.group(1)
    for m in REPO_PATH.finditer(text):
        yield "path", m.group(1)


def resolve(doc: Path, kind: str, target: str) -> Path | None:
    """The file a link or path points at, or None when it is not a repository path (a URL, an anchor,
    a placeholder such as `docs/data/{task}-{method}/`)."""
    if kind == "link":
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            return None
        target = target.split("#")[0]
        return (doc.parent / target).resolve()
    target = target.rstrip(".,;:")
    if PLACEHOLDER.search(target) or not target:
        return None
    if target.startswith(("awm_jax/", "awm_envs/")):
        target = ("src/" if target.startswith("awm_jax/") else "envs/") + target
    return ROOT / target


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_path_resolves(doc):
    text = doc.read_text()
    missing = []
    for kind, target in named_paths(text):
        path = resolve(doc, kind, target)
        if path is not None and not path.exists():
            missing.append(f"{kind} {target}")
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist:\n" + "\n".join(sorted(set(missing)))


def python_blocks(path: Path) -> list[str]:
    """The ```python code blocks of a markdown file, in order."""
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


RUN_BLOCKS = """
import sys, time
ns = {}
for i, block in enumerate(sys.argv[2:]):
    t = time.time()
    exec(compile(block, f"{sys.argv[1]}, code block {i + 1}", "exec"), ns)
    print(f"code block {i + 1}: {time.time() - t:.1f} s")
"""


def test_extending_guide_examples_run():
    """docs/guide/extending.md's three examples (a task, a world model, a method), run in order as a reader
    would paste them, in a fresh process so that what they register stays out of the other tests (~25 s)."""
    guide = ROOT / "docs" / "guide" / "extending.md"
    blocks = python_blocks(guide)
    assert len(blocks) == 3, f"{guide.name} should hold three examples, found {len(blocks)} python blocks"
    r = subprocess.run([sys.executable, "-c", RUN_BLOCKS, guide.name, *blocks], capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
