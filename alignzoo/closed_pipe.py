"""A closed stdout pipe ends a command quietly (``alignzoo plugins --json | head -1``), without a traceback.

Python's recipe catches ``BrokenPipeError`` at the top level and points stdout at /dev/null, so that the flush at
exit does not raise again. Hydra catches the error itself before it reaches the top (``--cfg job`` prints a
traceback and exits 1) and logging handlers print one "Logging error" per record, so the recipe is applied where
the error is raised: at every write to ``sys.stdout`` while the command runs.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: the exit status of a command whose stdout reader went away: 128 + SIGPIPE, what a shell reports for a process
#: that SIGPIPE ended (``yes | head``), so ``set -o pipefail`` still sees that the output was cut short
CLOSED_PIPE_EXIT = 141


class StdoutGuard:
    """``sys.stdout``, except that a write or flush into a closed pipe diverts the stream to /dev/null (the
    remaining output is dropped, the command goes on) and records it in ``closed``."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.closed = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self.divert()
            return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self.divert()

    def divert(self) -> None:
        self.closed = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())  # the buffered rest, and any later write, go nowhere
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def exit_code(guard: StdoutGuard, code: Any) -> Any:
    """The command's exit code, or ``CLOSED_PIPE_EXIT`` when it succeeded but its reader left early."""
    guard.flush()
    return CLOSED_PIPE_EXIT if guard.closed and code in (0, None) else code


def install() -> StdoutGuard:
    guard = StdoutGuard(sys.stdout)
    sys.stdout = guard
    return guard


def uninstall(guard: StdoutGuard) -> None:
    if sys.stdout is guard:
        sys.stdout = guard._stream
