"""The run folder: its layout, one writer at a time, outputs complete or absent, saved states checked
on restore.

Layout (the names below are this module's constants; every other module asks them from here):
    a run (`awm-jax train --out OUT`):   OUT/config.json, metrics.json, metrics.csv, returns.png,
                                         summary.txt, final_state/, checkpoints/<periods done>/, COMPLETE
                                         (the files: awm_jax.runner.results; the orbax folders:
                                         awm_jax.runner.checkpoint)
    a sweep (`awm-jax sweep --out OUT`): OUT/sweep.json, summary.csv, summary.md, COMPLETE,
                                         OUT/{task}-{method}[-name=value...]/ one run folder per member
                                         (metrics and config), OUT/groups/{task}-{method}/ the run of
                                         all of a group's members at once (its checkpoints and final
                                         state, the members' states stacked)

Every file is written with `atomic_write`: to a temporary name in the same folder, then renamed, so a
crash never leaves a half-written file behind.

Every folder that `awm-jax train` or `awm-jax sweep` writes (a run, a sweep, a sweep's group folder)
follows these rules:

    .lock            held with `fcntl.flock` by the one process writing the folder, which records its
                     pid, host, start time and command in it; a second writer is refused with a
                     message naming the holder. The kernel releases the lock when the process ends,
                     however it ends (so a killed run leaves no stale lock).
    COMPLETE         written last, atomically, when every output is in place: {"completed": time,
                     "files": {name: sha256}}. A folder without it is unfinished: `load_run` refuses
                     it, `--resume` continues it. Rewriting a folder removes the marker first.
    awm_sha256.json  inside every orbax folder (each checkpoint step, final_state/): the sha256 of each
                     of its files, written once orbax has committed the folder and checked before it
                     is restored, so a truncated, partial or flipped byte is detected.

A folder holding a run is never replaced unless asked (`overwrite=True`, `--overwrite`), and then it
is moved aside to `NAME.old-YYYYmmdd-HHMMSS`, never deleted.

Filesystem failures while saving come out as one OSError naming the path and the cause (orbax's
own error logs are silenced while it saves or restores; its temporary folders are removed).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path

LOCK = ".lock"
COMPLETE = "COMPLETE"
CHECKSUMS = "awm_sha256.json"
ORBAX_TMP = ".orbax-checkpoint-tmp"
CONFIG = "config.json"
METRICS = "metrics.json"
FINAL_STATE = "final_state"  # the final train state of every seed (orbax: awm_jax.runner.checkpoint)
CHECKPOINTS = "checkpoints"  # checkpoints/<periods done>/ (orbax: awm_jax.runner.checkpoint)
SWEEP = "sweep.json"  # a sweep's specification, in its top folder
GROUPS = "groups"  # a sweep's top folder: groups/{task}-{method}/, the run of all its grid members at once
# what a run or sweep writes: a folder holding any of these holds (part of) a run
RUN_NAMES = (CONFIG, METRICS, "metrics.csv", "summary.txt", "returns.png", FINAL_STATE,
             CHECKPOINTS, COMPLETE, SWEEP, "summary.csv", "summary.md", GROUPS)


def group_name(task: str, method: str) -> str:
    """The folder name of a (task, method) group: {task}-{method}."""
    return f"{task}-{method}"


def member_name(task: str, method: str, combo: dict) -> str:
    """The folder name of a sweep member: {task}-{method}[-name=value...] (combo: its grid values)."""
    return group_name(task, method) + "".join(f"-{k}={v:g}" for k, v in combo.items())


def group_folder(sweep_out, task: str, method: str) -> Path:
    """The folder of a sweep's group run: OUT/groups/{task}-{method}."""
    return Path(sweep_out) / GROUPS / group_name(task, method)


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked: in use, finished, unfinished or damaged."""


class FolderBusy(RunFolderError):
    """Another process holds the folder's lock."""


class DamagedError(RunFolderError):
    """A file of a run does not match the checksum recorded when it was written (or is missing)."""


# -- json ------------------------------------------------------------------------------------------
def read_json(path, what: str = "file"):
    """json.loads of a file, with errors that name the file and say what to do."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DamagedError(f"{path}: not valid JSON ({e}); the {what} is truncated or damaged: rerun the run "
                           "(--overwrite moves the damaged one aside) or restore the file from a copy") from None


# -- writing files ---------------------------------------------------------------------------------
def atomic_write(path, data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename. The file honours the umask (mode
    0666 & ~umask, as `open` would create it). An OSError names `path` (not the temporary file)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, str(tmp), tmp):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


# -- the lock --------------------------------------------------------------------------------------
def ensure_folder(path) -> Path:
    """Create folder `path` (and its parents); an OSError naming the path if it cannot be one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(path))
    path.mkdir(parents=True, exist_ok=True)
    return path


class FolderLock:
    """An exclusive `flock` on `folder/.lock`, held until `release()` (or the process ends)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        path = self.folder / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusy(f"{self.folder} is in use by another process ({_holder(path)}): wait for it to finish "
                             "or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        info = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                    command=" ".join(sys.argv)[:500])
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _holder(path: Path) -> str:
    try:
        d = json.loads(path.read_text())
        return f"pid {d['pid']} on {d['host']}, since {d['started']}: {d['command']}"
    except (OSError, ValueError, KeyError):
        return "its pid is not recorded yet"


# -- what a folder holds ---------------------------------------------------------------------------
def run_content(folder) -> list[str]:
    """The names in `folder` that belong to a run (an empty checkpoints/ does not count)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if p.name == "checkpoints" and p.is_dir() and not any(p.iterdir()):
            continue
        if p.name in RUN_NAMES or p.name.startswith(FINAL_STATE + ORBAX_TMP):
            out.append(p.name)
    return out


def is_complete(folder) -> bool:
    return (Path(folder) / COMPLETE).is_file()


def move_aside(folder) -> Path:
    """Rename `folder` to `folder.old-YYYYmmdd-HHMMSS` (with -2, -3... if taken); returns the new path."""
    folder = Path(folder)
    stem = f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    target, n = folder.with_name(stem), 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{stem}-{n}")
    os.rename(folder, target)
    return target


def claim(folder, overwrite: bool = False, log=print) -> tuple[FolderLock, str]:
    """Take `folder` for writing: create it, lock it (refused if another process holds it) and, with
    `overwrite`, move whatever run it holds aside. Returns (lock, status), status "new" (no run in
    it), "unfinished" (a run without COMPLETE) or "complete"; the caller decides what each allows
    and releases the lock when done."""
    folder = ensure_folder(folder)
    lock = FolderLock(folder)
    try:
        if overwrite and run_content(folder):
            moved = move_aside(folder)
            log(f"[awm-jax] --overwrite: moved the previous contents of {folder} to {moved}")
            new = FolderLock(ensure_folder(folder))
            lock.release()
            lock = new
        status = "complete" if is_complete(folder) else "unfinished" if run_content(folder) else "new"
    except BaseException:
        lock.release()
        raise
    return lock, status


# -- the completion marker -------------------------------------------------------------------------
def mark_complete(folder, names) -> None:
    """Write `folder/COMPLETE` (last, atomically) recording the sha256 of each of `names` (for an orbax
    folder, of its checksum file)."""
    folder = Path(folder)
    files = {}
    for name in names:
        rel = f"{name}/{CHECKSUMS}" if (folder / name).is_dir() else name
        files[rel] = sha256_file(folder / rel)
    atomic_write(folder / COMPLETE, json.dumps({"completed": time.strftime("%Y-%m-%d %H:%M:%S"), "files": files},
                                               indent=1))


def unmark(folder) -> None:
    """Remove the COMPLETE marker before a folder's outputs are rewritten."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(Path(folder) / COMPLETE)


def check_complete(folder, verify=(CONFIG, METRICS)) -> dict:
    """The COMPLETE marker of `folder`, after checking the files named in `verify` against it; raises
    RunFolderError when the folder is unfinished, DamagedError when a file differs."""
    folder = Path(folder)
    if not is_complete(folder):
        checkpointed = any((folder / "checkpoints").glob("[0-9]*"))
        hint = ("--resume continues it from its newest intact checkpoint" if checkpointed
                else "--resume starts it again there")
        raise RunFolderError(
            f"{folder} holds no finished run: it has no {COMPLETE} marker, so the run that writes it was "
            f"interrupted, failed or is still running ({hint}; --overwrite moves it aside). A folder written by "
            "awm_jax before it kept markers: load_run(path, require_complete=False)")
    marker = read_json(folder / COMPLETE, "COMPLETE marker")
    for name in verify:
        want = marker.get("files", {}).get(name)
        if want is None:
            continue
        if not (folder / name).is_file():
            raise DamagedError(f"{folder / name} is missing, though {folder / COMPLETE} records it: restore it "
                               "from a copy or rerun the run (--overwrite moves this one aside)")
        if sha256_file(folder / name) != want:
            raise DamagedError(f"{folder / name} is not the file the run wrote (its sha256 differs from the one in "
                               f"{folder / COMPLETE}): it was damaged or edited; restore it from a copy or rerun the "
                               "run (--overwrite moves this one aside)")
    return marker


# -- checksums of orbax folders --------------------------------------------------------------------
def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(folder) -> None:
    """Record the sha256 of every file under `folder` (an orbax folder orbax has committed) in
    `folder/awm_sha256.json`."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != CHECKSUMS}
    atomic_write(folder / CHECKSUMS, json.dumps({"sha256": files}, indent=1))


def verify_checksums(folder, missing_ok: bool = False) -> None:
    """Check every file recorded in `folder/awm_sha256.json`; DamagedError naming the first that is
    missing or differs, or the checksum file itself when absent (a save that did not finish) unless
    `missing_ok`."""
    folder = Path(folder)
    path = folder / CHECKSUMS
    if not path.is_file():
        if missing_ok:
            return
        raise DamagedError(f"{folder} has no {CHECKSUMS}: its save did not finish")
    listed = read_json(path, "checksum file").get("sha256")
    if not listed:
        raise DamagedError(f"{path} lists no files")
    for rel, want in listed.items():
        p = folder / rel
        if not p.is_file():
            raise DamagedError(f"{p} is missing")
        if sha256_file(p) != want:
            raise DamagedError(f"{p} does not match its checksum: damaged since it was saved")


# -- saving with orbax -----------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_orbax():
    """Silence orbax's (absl's) log records while it saves or restores: its failures arrive as our
    exceptions, without a traceback per background thread."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EIO)


def as_os_error(e: BaseException, path) -> OSError | None:
    """A filesystem failure `e` (an OSError, one it was raised from, or a tensorstore error quoting a
    known strerror, e.g. "RESOURCE_EXHAUSTED: ... No space left on device") as one OSError naming
    `path`; None for anything else."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return OSError(seen.errno, seen.strerror or os.strerror(seen.errno), str(path))
        seen = seen.__cause__
    text = str(e)
    for code in _ERRNOS:
        if os.strerror(code) in text:
            return OSError(code, os.strerror(code), str(path))
    return None


@contextlib.contextmanager
def saving(path):
    """Around writing orbax folder `path` and its checksums: orbax's logs silenced; on failure its
    temporary folders and the unfinished `path` (one without checksums) are removed, and a
    filesystem error is raised as one OSError naming `path`."""
    path = Path(path)
    try:
        with quiet_orbax():
            yield
    except BaseException as e:
        for tmp in path.parent.glob(glob.escape(path.name) + ORBAX_TMP + "*"):
            shutil.rmtree(tmp, ignore_errors=True)
        if path.is_dir() and not (path / CHECKSUMS).is_file():
            shutil.rmtree(path, ignore_errors=True)
        err = as_os_error(e, path) if isinstance(e, Exception) else None
        if err is not None:
            raise err from e
        raise
