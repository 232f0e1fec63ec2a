"""SIGINT and SIGTERM during training: stop at the next chunk boundary with a checkpoint, then exit cleanly.

`watch()` is a context manager that replaces the SIGINT and SIGTERM handlers (and restores the previous
ones when it ends). The first signal only sets a flag; `run_training` looks at it after every chunk, saves
a checkpoint of the chunk just completed, waits for orbax to finish, closes it, and raises `Interrupted`
(signal, env step reached, checkpoint folder). The command line (`awm-jax train`, `sweep`, `quickstart`
and the experiments' group runners) catches it, prints one line that names the env step, the checkpoint
and the command that resumes, and exits with 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.

A second signal stops at once. On the command line (`watch(hard=True)`) a thread woken by the signal
itself (`signal.set_wakeup_fd`, so even while the main thread waits inside a compiled XLA program, where
Python runs no signal handler) prints one line and ends the process with `os._exit`; the run folder
keeps its previous checkpoint, since a checkpoint appears under its final name only once it is complete
(`awm_jax.runner.checkpoint.Checkpointer.save`). Called from Python (`watch()`, what `run_training` installs
by itself), the second signal raises KeyboardInterrupt as Python's own handler does.

Signal handlers can only be set in the main thread: elsewhere `watch()` installs nothing and the run
behaves as Python's defaults make it (KeyboardInterrupt, or the end of the process on SIGTERM).

Several processes (`jax.distributed`): at every chunk boundary the processes share their flags
(`agree`, one tiny all-gather), so a signal that reaches any of them stops all of them after the same
chunk, each saving its part of the same checkpoint and raising `Interrupted` with the same signal. A
second signal ends only the process that receives it, at once; the others then fail at their next
collective operation (their folder keeps its previous checkpoint all the same).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def env_step_text(step: int | None, total: int | None) -> str:
    if step is None:
        return ""
    return f"env step {step}" + (f"/{total}" if total else "")


class Interrupted(Exception):
    """Training stopped by SIGINT or SIGTERM at a chunk boundary (or between a sweep's groups), after its
    checkpoint was written and orbax closed.

    signum: the signal; exit_code: 128 + signum (130 SIGINT, 143 SIGTERM); env_step: the env steps per seed
    reached (None: stopped between groups); total: the run's env steps; checkpoint: the folder of the
    checkpoint that resuming continues from (None: none was written, so resuming starts at env step 0);
    out: the run folder; where: what was running ("cancer_treatment / markov_mlp", "sweep group 2/4 ...").
    `run_training(..., resume=True)` (`--resume`) continues the run from `checkpoint`."""

    def __init__(self, signum: int, env_step: int | None = None, total: int | None = None, checkpoint=None,
                 out=None, where: str = ""):
        self.signum, self.env_step, self.total, self.where = signum, env_step, total, where
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.out = None if out is None else Path(out)
        super().__init__(self.line())

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def line(self, resume_command: str | None = None) -> str:
        """One line: the signal, what stopped where, the checkpoint, how to resume."""
        resume = f"`{resume_command}`" if resume_command else "resume=True"
        where = f" {self.where}" if self.where else ""
        if self.env_step is None:  # between groups: the finished ones are kept
            return f"{signal_name(self.signum)}: stopped{where}; {resume} continues from there"
        at = f"{where} at {env_step_text(self.env_step, self.total)}"
        if self.checkpoint is None:
            return (f"{signal_name(self.signum)}: stopped{at} before any checkpoint was written; {resume} starts "
                    f"the run again from env step 0 in {self.out}")
        return f"{signal_name(self.signum)}: stopped{at}; checkpoint {self.checkpoint}; {resume} continues from it"


class Watch:
    """What `watch()` yields: the first signal received (`signum`, None until then) and what a second
    signal's line reports (`saved`, `resume_command`)."""

    def __init__(self, hard: bool = False, resume_command: str | None = None, active: bool = True):
        self.hard, self.resume_command, self.active = hard, resume_command, active
        self.signum: int | None = None
        self.count = 0
        self.saved: tuple[int, Path] | None = None  # (env step, folder) of the newest checkpoint on disk
        self.out = None  # the run folder being written
        self._handled = 0
        self._lock = threading.Lock()

    # -- receiving -------------------------------------------------------------------------------
    def _receive(self, signum: int) -> None:
        """Count a signal: the first sets the flag and says what happens; the second stops at once."""
        with self._lock:
            self.count += 1
            first = self.count == 1
            if first:
                self.signum = signum
        name = signal_name(signum)
        if first:
            _say(f"awm-jax: {name} received: stopping after the chunk that is running, with a checkpoint (a second "
                 "signal stops at once, keeping the previous checkpoint)")
            return
        if self.hard:
            _say(f"awm-jax: second signal ({name}): stopped at once; {self._kept()}")
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os._exit(128 + signum)

    def _kept(self) -> str:
        resume = f"`{self.resume_command}`" if self.resume_command else "resume=True"
        if self.saved is None:
            where = f" in {self.out}" if self.out is not None else ""
            return f"no checkpoint of the running job yet{where}: {resume} starts it again from env step 0"
        step, folder = self.saved
        return f"checkpoint {folder} (env step {step}) is kept; {resume} continues from it"

    def _python_handler(self, signum, frame) -> None:
        if self.hard and self._thread is not None:
            return  # the wake-up thread has counted it already
        self._handled += 1
        if self._handled >= 2:  # from Python: stop at once, as Python's own handler would
            raise KeyboardInterrupt
        self._receive(signum)

    # -- installing ------------------------------------------------------------------------------
    _thread = None

    def _install(self) -> None:
        self._previous = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, self._python_handler)
        self._fds = None
        if self.hard:
            r, w = os.pipe()
            os.set_blocking(w, False)
            self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            self._fds = (r, w)
            self._thread = threading.Thread(target=self._wakeups, args=(r,), name="awm-jax-signals", daemon=True)
            self._thread.start()

    def _wakeups(self, fd: int) -> None:
        """The signal numbers the C handler writes to the wake-up fd, as they arrive (EOF: uninstalled)."""
        while True:
            try:
                data = os.read(fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in SIGNALS:
                    self._receive(signum)

    def _uninstall(self) -> None:
        if self._fds is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            os.close(self._fds[1])  # the thread reads EOF and ends
            self._thread.join(timeout=5)
            os.close(self._fds[0])
            self._thread = None
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)

    # -- polling ---------------------------------------------------------------------------------
    def agree(self, due: bool = False) -> tuple[int | None, bool]:
        """(the signal to stop on or None, whether a wall-time checkpoint is due), the same on every
        process: with several processes each one's flag and `due` are shared (all of them must call this at
        the same chunk boundaries); one process's signal stops them all."""
        import jax

        if jax.process_count() == 1:
            return self.signum, due
        import numpy as np
        from jax.experimental import multihost_utils

        mine = np.array([self.signum or 0, int(due)], np.int32)
        every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 2)
        signum = int(every[:, 0].max())
        return (signum or None), bool(every[:, 1].max())


_ACTIVE: list[Watch] = []


@contextlib.contextmanager
def watch(hard: bool = False, resume_command: str | None = None):
    """Handle SIGINT and SIGTERM for the training inside (see the module docstring); yields the `Watch`.
    Nested calls share the outermost watch (a sweep's runs, the command line's training). hard: a second
    signal ends the process at once with one line (the command line); otherwise it raises KeyboardInterrupt.
    resume_command: the command that resumes, for that line. Outside the main thread nothing is installed
    and the watch never fires."""
    if _ACTIVE:
        outer = _ACTIVE[-1]
        if resume_command and not outer.resume_command:
            outer.resume_command = resume_command
        yield outer
        return
    active = threading.current_thread() is threading.main_thread()
    w = Watch(hard=hard, resume_command=resume_command, active=active)
    if active:
        w._install()
    _ACTIVE.append(w)
    try:
        yield w
    finally:
        _ACTIVE.pop()
        if active:
            w._uninstall()


def current() -> Watch | None:
    """The innermost active watch, or None."""
    return _ACTIVE[-1] if _ACTIVE else None


def check(where: str = "", out=None) -> None:
    """Between a sweep's or an experiment's groups: raise `Interrupted` (nothing running, nothing lost) if a
    signal has arrived (agreed over the processes)."""
    w = current()
    if w is not None:
        signum, _ = w.agree()
        if signum:
            raise Interrupted(signum, where=where, out=out)


@contextlib.contextmanager
def exit_on_interrupt(resume_command: str, prefix: str = "awm-jax: "):
    """For a command line: `watch(hard=True)` around the body; an `Interrupted` becomes its one line on
    stderr and the exit code 130 (SIGINT) or 143 (SIGTERM), without a traceback."""
    try:
        with watch(hard=True, resume_command=resume_command):
            yield
    except Interrupted as e:
        import jax

        if jax.process_index() == 0:
            _say(prefix + e.line(resume_command))
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        raise SystemExit(e.exit_code) from None


def _say(line: str) -> None:
    """One line on stderr, written at once (safe from a thread and while the main thread prints)."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())
