"""Log lines of the ``jaxnas`` logger on stderr for the duration of a command or script.

``jaxnas`` commands (:mod:`jaxnas.cli`) and the experiment scripts share
:class:`CliLogging`; it lives down here so that a script need not import the command
line to get the same log lines.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["CliLogging"]


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


class CliLogging:
    """For the duration of a command: INFO lines of the ``jaxnas`` logger to stderr, not
    propagated (absl, imported by orbax, installs a root handler that would print them
    twice); absl/orbax at ERROR. Restores the previous setup afterwards."""

    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.log = logging.getLogger("jaxnas")
        self.absl = logging.getLogger("absl")

    def __enter__(self):
        self.saved = (self.log.level, self.log.propagate, self.absl.level)
        self.handler = StderrHandler()
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        self.log.addHandler(self.handler)
        self.log.setLevel(logging.DEBUG if self.verbose else logging.INFO)
        self.log.propagate = False
        self.absl.setLevel(logging.WARNING if self.verbose else logging.ERROR)
        return self

    def __exit__(self, *exc):
        self.log.removeHandler(self.handler)
        level, self.log.propagate, absl_level = self.saved
        self.log.setLevel(level)
        self.absl.setLevel(absl_level)
