"""The first cause of an error, named: what a one-line error must say, whoever raised it.

    from conf.errors import StageError, SettingError, one_line, first_cause, describe
    raise StageError("silver table x does not exist; run `lakebert clean` first")   # exit code 1
    one_line(exc)      # what a failed command prints: the error's text and first cause, redacted
    first_cause(exc)   # 'ENOSPC (No space left on device)', 'java.net.ConnectException: Connection refused', or None
    describe(exc)      # 'SafetensorError: Error while serializing: ... (cause: ENOSPC (No space left on device))'

Errors reach the user wrapped: a Py4J error's first line is `An error occurred while calling
o805.parquet.` and its cause is a `Caused by:` line deep in the Java trace; safetensors reports
a full disk as `IoError(Os { code: 28, ... })`; a rank's `OSError` is re-raised by the launcher
as a torchrun exit code. `first_cause` looks through the chain of Python exceptions
(`__cause__`, `__context__`) and the text of each for the cause a user can act on:

- an `OSError` with an errno, by its name (`ENOSPC (No space left on device)`, `EACCES`, ...);
- else the deepest `Caused by:` of a Java trace (the root cause, not the wrapper):
  `java.net.ConnectException: Connection refused`;
- else an operating-system error message that the text quotes (`No space left on device`:
  Rust and C libraries print the C library's own message), by its errno name.

No Spark, no torch: the training processes use it for their failure records and the stages for
their one line. `describe` and `first_cause` leave redaction to the caller; `one_line` redacts.

The stages' error types live here, on the ground floor, so that every module that raises them
(the stage runner, the session, the tables) imports down, never back up to the stage runner.
"""

from __future__ import annotations

import errno
import os
import re

from conf.redact import redact

# OS errors a user can act on, found by their message when no OSError carries them.
NAMED_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ECONNREFUSED,
                errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMFILE,
                errno.ENOMEM, errno.EIO)
_JAVA_CAUSE = re.compile(r"^\s*Caused by:\s*(\S+?)(?::\s*(.*))?\s*$", re.M)
_MAX_CHAIN = 20
_MAX_CAUSE_CHARS = 300
MAX_ERROR_CHARS = 2000  # a failed command's one line on stderr


class StageError(RuntimeError):
    """Bad input or state a user can fix; printed as one line, exit code 1."""


class SettingError(StageError):
    """A setting that cannot work as given (found once the stage looks at the data or the
    folders it names); printed as one line, exit code 2, as a config error."""


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or during, outermost first (not past a
    `raise ... from None`, whose message says all)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < _MAX_CHAIN:
        seen.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return seen


def errno_name(code: int) -> str:
    return f"{errno.errorcode.get(code, f'errno {code}')} ({os.strerror(code)})"


def _named_in(text: str) -> str | None:
    for code in NAMED_ERRNOS:
        if os.strerror(code) in text:
            return errno_name(code)
    return None


def java_root_cause(text: str) -> str | None:
    """The deepest `Caused by: <class>: <message>` of a Java trace, or None."""
    causes = _JAVA_CAUSE.findall(text)
    if not causes:
        return None
    name, message = causes[-1]
    return f"{name}: {message}" if message else name


def first_cause(exc: BaseException) -> str | None:
    """The cause a user can act on (see the module's docstring), or None when there is nothing
    more to say than the exception itself."""
    chain = _chain(exc)
    for item in chain:
        if isinstance(item, OSError) and item.errno in errno.errorcode:
            return errno_name(item.errno)
    texts = [str(item) for item in chain]
    for text in texts:
        root = java_root_cause(text)
        if root:
            return root[:_MAX_CAUSE_CHARS]
    for text in texts:
        named = _named_in(text)
        if named:
            return named
    return None


def describe(exc: BaseException, max_chars: int = 1000) -> str:
    """`<class>: <first line>`, with its first cause when the first line does not say it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return with_cause(f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"[:max_chars], exc)


def with_cause(text: str, exc: BaseException) -> str:
    """`text` with its first cause: `(cause: ...)` after it, or only the errno's name when the
    text quotes the error's message already (`... No space left on device (ENOSPC)`)."""
    cause = first_cause(exc)
    if cause is None or cause in text:
        return text
    name, _, message = cause.partition(" (")
    if message and message[:-1] in text:
        return text if name in text else f"{text} ({name})"
    return f"{text} (cause: {cause})"


def one_line(exc: BaseException) -> str:
    """An exception as one redacted line: a StageError's own text, else the class and the first
    line of its message; then its first cause when the line does not say it (an OS error by
    name, the root cause of a Java trace: `Connection refused`, not `An error occurred while
    calling o805.parquet.`)."""
    if isinstance(exc, StageError):
        text = with_cause(" ".join(line.strip() for line in str(exc).splitlines() if line.strip()), exc)
    else:
        text = describe(exc, MAX_ERROR_CHARS)
    return redact(text)[:MAX_ERROR_CHARS]
