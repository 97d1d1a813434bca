"""User-facing errors: each carries one message that names the thing and the fix.

The CLI prints these without a traceback; anything else is a bug and keeps its traceback in the record.
"""

from __future__ import annotations


class AlignzooError(Exception):
    """An error caused by the user's input (config, data, plugin, file), with a message that says the fix."""


class ConfigError(AlignzooError):
    """One or more problems in the composed config; ``problems`` lists them all with their full keys."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config ({len(self.problems)} problem(s)):\n{lines}")


class UnknownComponentError(AlignzooError):
    """A component name that no plugin registered."""


class DuplicateComponentError(AlignzooError):
    """Two plugins registered the same name for one kind."""


class DataError(AlignzooError):
    """A dataset that cannot be used: missing columns, empty, unreadable."""


class TrainingDivergedError(AlignzooError):
    """A NaN or inf appeared in a training quantity."""
