"""Errors raised while importing or loading checkpoints."""


class CheckpointError(ValueError):
    """A checkpoint folder or file that tqjax refuses to load; the message says why."""


class UnsupportedModelError(CheckpointError):
    """An architecture or a config setting that tqjax does not implement."""
