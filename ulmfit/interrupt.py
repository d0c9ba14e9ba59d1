"""Ctrl-C and SIGTERM: both unwind the running step like a KeyboardInterrupt, so that every step removes its
temporary files, and end the process with 130 (SIGINT) or 143 (SIGTERM)."""

import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt."""


def _terminate(signum, frame):
    raise Terminated()


def stop_cleanly():
    """Make SIGTERM unwind like Ctrl-C; returns the exit code for an interrupt: 143 (SIGTERM) or 130 (SIGINT)."""
    signal.signal(signal.SIGTERM, _terminate)
    return lambda interrupt: 143 if isinstance(interrupt, Terminated) else 130
