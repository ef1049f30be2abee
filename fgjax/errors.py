"""Errors a user can fix without reading a traceback.

Entry points (``fgjax.runner.main``) print a ``UserError`` as one line on stderr and exit with
status 2. Raise it (or a subclass) for bad configs, missing or unreadable files and checkpoints,
and incompatible models — never for bugs, which should keep their traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message alone must say what to change."""


class ConfigError(UserError):
    """A config key has an unknown name, a wrong type or a value outside what is allowed."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable or does not fit the current run."""


class StagePreempted(UserError):
    """A preemption signal stopped a pipeline stage's trainer after it saved a checkpoint; the
    stage is not marked finished, and rerunning the same command resumes it."""


class TrainingStopped(UserError):
    """A guard stopped training (e.g. too many non-finite updates in a row)."""


class VocabularyMismatchError(UserError, ValueError):
    """Models that must share a tokenizer (policy and fused reward models) do not; raise it
    from the check so entry points print one line (a ``ValueError`` too, for old callers)."""
