"""Why `lanectl run` could not start, as one typed error, and the exit codes it ends with.

The codes follow sysexits(3), which systemd documents for services (systemd.exec(5), "Process Exit Codes"),
so the unit can tell a start that will never work (RestartPreventExitStatus=64 78) from one worth retrying:

    64 EX_USAGE       a bad command-line option (e.g. --log-level LOUD)
    69 EX_UNAVAILABLE (not used: see EX_TEMPFAIL)
    70 EX_SOFTWARE    an unexpected error: a bug; the log has its traceback
    73 EX_CANTCREAT   the database or the control socket cannot be created or opened (read-only or missing
                      directory, permission, a file in the way)
    75 EX_TEMPFAIL    the HTTP port (site `http.listen`) or the control socket is held by another process: it is
                      usually the old instance still stopping, so systemd's Restart=on-failure retries it
    78 EX_CONFIG      the configuration is invalid (file, key and reason)

Adapters raise :class:`StartupError` where the resource opens; the CLI prints its one line and exits with its
code. Nothing here does I/O.
"""

from __future__ import annotations

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_CONFIG = 78


class StartupError(Exception):
    """A resource the daemon needs could not be set up: ``thing`` names it (a path, a port, an option),
    ``reason`` says why, ``exit_code`` is one of the codes above."""

    def __init__(self, thing: str, reason: str, exit_code: int) -> None:
        self.thing = thing
        self.reason = reason
        self.exit_code = exit_code
        super().__init__(f"{thing}: {reason}")

    def line(self) -> str:
        """The one line for stderr and the log (never a newline inside)."""
        return " ".join(f"{self.thing}: {self.reason}".split())


def os_reason(exc: OSError) -> str:
    """``permission denied`` rather than ``[Errno 13] Permission denied: '/x'`` (the path is named already)."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
