"""What a lakebert command shows: its own lines on the console, everything else in the run's log.

    lakebert run --set ingest.source=data/sample     # quiet: stage lines, progress, warnings, summary
    lakebert run --verbose ...                       # everything on the console, as it comes
    LAKEBERT_LOG_LEVEL=DEBUG lakebert run ...        # the same as --verbose

A quiet run points the process's file descriptors 1 and 2 at a log file while the stage runs,
so whatever writes there goes to the log: Spark's JVM (Ivy's dependency report, log4j), the
torchrun processes and their ranks, MLflow, transformers, Python warnings. lakebert's own
lines reach the console through a copy of the original stdout, and are logged too. The log
is written to a local temporary file first (a bad-input error writes nothing under the
lakehouse, and the lakehouse may be an object store), then redacted (`conf.redact`: a secret
that a library or the JVM printed becomes `***`) and kept as
`_runs/<stage>/<stage_run_id>/run.log`, which the summary names.

A long Spark job shows one live line (`clean: Spark tasks 12/40`, `spark_jobs.session.SparkProgress`);
training shows rank 0's progress line. On a terminal the line is rewritten in place; when the output is a file or a
pipe, an activity shows a progress line only once it has lasted `PROGRESS_EVERY_S` seconds,
and then at most once every `PROGRESS_EVERY_S`.

Notebooks and library callers run no console: `detail()` then prints, as `--verbose` would.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import threading
import time

from conf.redact import redact

LOG_FILE = "run.log"
LOG_LEVEL_ENV = "LAKEBERT_LOG_LEVEL"
VERBOSE_LEVELS = ("DEBUG",)
# Without a terminal, progress is a new line each time: one every 30 s keeps a 2-minute demo
# short and still shows a long job moving.
PROGRESS_EVERY_S = 30.0
# In the log, a live line is written at most this often (the console's may change every poll).
LOG_PROGRESS_EVERY_S = 5.0


def verbose_requested(flag: bool = False) -> bool:
    return flag or os.environ.get(LOG_LEVEL_ENV, "").strip().upper() in VERBOSE_LEVELS


class _Switch(io.TextIOBase):
    """A stream that writes wherever `target` points now. sys.stderr is one while a quiet run
    lasts; loggers that captured it keep working after the run points it back."""

    encoding = "utf-8"

    def __init__(self, target):
        self.target = target

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def fileno(self) -> int:
        return self.target.fileno()  # the log's, for faulthandler or Popen(stderr=sys.stderr)

    def isatty(self) -> bool:
        return False


class _LineSink(io.TextIOBase):
    """A text stream that hands complete lines to `emit`. A partial line waits for its end
    (`print("Loading...", end="", flush=True)` then `print(" done")` is one line) until `drain()`."""

    encoding = "utf-8"

    def __init__(self, emit):
        self.emit, self.pending, self.lock = emit, "", threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:  # emitted under the lock, so two threads' lines keep their order
            self.pending += text
            *lines, self.pending = self.pending.split("\n")
            for line in lines:
                self.emit(line)
        return len(text)

    def drain(self) -> None:
        with self.lock:
            rest, self.pending = self.pending, ""
            if rest:
                self.emit(rest)


class Console:
    """Where lakebert's lines go. `out` is the user's console, `log` the run's log (None: no
    run console, so everything is shown). `live`: `out` is a terminal, so a progress line is
    rewritten in place."""

    def __init__(self, out, log=None, live: bool = False, log_path: str | None = None):
        self.out, self.log, self.live, self.log_path = out, log, live, log_path
        self.quiet = log is not None
        self.activity = ""  # what runs now, for progress lines: the stage's name
        self.training = False  # rank 0's progress owns the live line
        self._lock = threading.RLock()
        self._shown = ""  # the live line on a terminal, if any
        self._last_printed = self._last_logged = float("-inf")
        self._since: float | None = None  # when the current live activity began

    def _write_out(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _log(self, line: str) -> None:
        if self.log is not None:
            self.log.write(line + "\n")
            self.log.flush()

    def _clear_live(self) -> None:
        if self._shown:
            self._write_out("\r\033[K")
            self._shown = ""

    def say(self, text: str) -> None:
        """A line for the user: on the console, and in the log."""
        with self._lock:
            self._clear_live()
            self._write_out(text + "\n")
            self._log(text)

    def detail(self, text: str) -> None:
        """What the user may look up later (the resolved config, a full report): the log only,
        or the console when no quiet run is active."""
        with self._lock:
            if self.quiet:
                self._log(text)
            else:
                self._clear_live()
                self._write_out(text + "\n")

    def progress(self, text: str) -> None:
        """A live line: rewritten in place on a terminal; else printed after the activity has
        lasted PROGRESS_EVERY_S, then at most once every PROGRESS_EVERY_S."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_logged >= LOG_PROGRESS_EVERY_S:
                self._last_logged = now
                self._log(text)
            if self.live:
                width = shutil.get_terminal_size((100, 20)).columns - 1
                self._shown = text[:width]
                self._write_out("\r" + self._shown + "\033[K")
            else:
                self._since = self._since if self._since is not None else now
                if now - max(self._last_printed, self._since) >= PROGRESS_EVERY_S:
                    self._last_printed = now
                    self._write_out(text + "\n")

    def end_progress(self) -> None:
        """The activity behind the live line ended: erase it (a new one starts its own clock)."""
        with self._lock:
            self._clear_live()
            self._since = None

    @contextlib.contextmanager
    def training_output(self, progress_prefix: str):
        """While TorchDistributor runs: the ranks' output reaches the driver as lines written to
        sys.stdout (local mode) or sys.stderr (the executors' log stream). In a quiet run rank
        0's progress lines become the live line, its other lakebert lines are said, and the rest
        (torchrun's banner, MLflow, transformers) goes to the log."""
        if not self.quiet:
            yield
            return
        step_prefix = progress_prefix + " step "

        def route(line: str) -> None:
            if line.startswith(step_prefix):
                self.progress(line)
            elif line.startswith(progress_prefix):
                self.say(line)
            else:
                self._log(line)

        sink, saved = _Switch(_LineSink(route)), (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = sink  # a _Switch: a logger made inside keeps a working stream
        self.training = True
        try:
            yield
        finally:
            sink.target.drain()
            sys.stdout, sys.stderr = saved
            sink.target = saved[1]
            self.training = False
            self.end_progress()


_DEFAULT = Console(sys.stdout)
_current: Console | None = None


def current() -> Console:
    """The active run's console, or one that prints everything to stdout."""
    if _current is not None:
        return _current
    _DEFAULT.out = sys.stdout  # pytest and notebooks swap sys.stdout
    return _DEFAULT


def running() -> bool:
    """A command's run console is active (quiet or verbose), not a notebook or a library call."""
    return _current is not None


def is_running(console: Console) -> bool:
    """`console` is the active command run's console (not a notebook's nor the default)."""
    return _current is not None and console is _current


def say(text: str) -> None:
    current().say(text)


def detail(text: str) -> None:
    current().detail(text)


class RunConsole:
    """The console of one command run. Quiet: fds 1 and 2 point at a temporary log until the
    run ends; `keep()` then copies it to the run's record folder. Verbose: nothing is moved.

        with RunConsole(stage, verbose=False, final_path=...) as console:
            ...
        path = console.keep(write)   # where the log now is
    """

    def __init__(self, stage: str, verbose: bool, final_path: str | None = None):
        self.stage, self.verbose, self.final_path = stage, verbose, final_path
        self.console: Console | None = None
        self.temp_path: str | None = None
        self._log_fd: int | None = None

    def __enter__(self) -> Console:
        global _current
        self._outer = _current
        if self.verbose:
            self.console = Console(sys.stdout, log_path=None)
            _current = self.console
            return self.console
        fd, self.temp_path = tempfile.mkstemp(prefix=f"lakebert-{self.stage}-", suffix=".log")
        log = os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", buffering=1)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self._saved_fds = (os.dup(1), os.dup(2))
        self._saved_streams = (sys.stdout, sys.stderr)
        try:
            out = self._console_stream(sys.stdout, self._saved_fds[0])
            self.console = Console(out, log, live=out.isatty(), log_path=self.final_path or self.temp_path)
            self._stdout = _Switch(_LineSink(self.console.say))
            self._stderr = _Switch(log)
            # Kept past the run: the JVM and torchrun share this file position, so `keep()`
            # rewrites the file through it and their later output lands after the kept text.
            self._log_fd = os.dup(fd)
            os.dup2(fd, 1)  # the JVM, torchrun and every child process inherit these
            os.dup2(fd, 2)
        except BaseException:
            self._restore()
            raise
        sys.stdout, sys.stderr = self._stdout, self._stderr
        _current = self.console
        return self.console

    @staticmethod
    def _console_stream(stream, saved_fd: int):
        """The user's stdout, surviving fd 1's redirection: a copy of the descriptor when the
        stream writes to fd 1, else the stream itself (pytest's capture, a notebook's)."""
        try:
            writes_fd1 = stream.fileno() == 1
        except (AttributeError, OSError, io.UnsupportedOperation):
            writes_fd1 = False
        if writes_fd1:
            return os.fdopen(os.dup(saved_fd), "w", encoding="utf-8", errors="backslashreplace", buffering=1)
        return stream

    def _restore(self) -> None:
        """The process's own stdout and stderr again, fds first: whatever fails here or before,
        the user's console comes back."""
        os.dup2(self._saved_fds[0], 1)
        os.dup2(self._saved_fds[1], 2)
        for fd in self._saved_fds:
            os.close(fd)
        sys.stdout, sys.stderr = self._saved_streams

    def __exit__(self, *exc) -> None:
        global _current
        _current = self._outer
        if self.verbose:
            return
        try:
            self.console.end_progress()
            self._stdout.target.drain()
        finally:
            self._restore()
            self._stdout.target, self._stderr.target = sys.stdout, sys.stderr  # for whoever kept them
            if self.console.out is not sys.stdout:
                self.console.out.close()
            self.console.log.close()

    def keep(self, write_text, publish: bool = True) -> str | None:
        """Redact the log (whatever the JVM or a library printed, a remembered secret becomes
        `***`) and, with `publish`, copy it to `final_path` with `write_text(path, text)`. Return
        where the log is: the temporary file if it is not published or the copy failed. What the
        JVM prints after this (its shutdown) stays in the temporary file, or is dropped with it."""
        if self._log_fd is None:  # verbose, or the redirection never started
            return self.temp_path
        with open(self.temp_path, encoding="utf-8", errors="replace") as fh:
            text = redact(fh.read())
        if publish and self.final_path is not None:
            try:
                write_text(self.final_path, text)
                os.close(self._log_fd)
                os.unlink(self.temp_path)
                return self.final_path
            except Exception:  # noqa: BLE001 - the log must not hide the run's outcome
                pass
        # Through the shared file position: truncating by name would leave the JVM writing
        # at its old offset, after a hole of NUL bytes.
        os.lseek(self._log_fd, 0, os.SEEK_SET)
        os.ftruncate(self._log_fd, 0)
        os.write(self._log_fd, text.encode("utf-8", "backslashreplace"))
        os.close(self._log_fd)
        return self.temp_path
