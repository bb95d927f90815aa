"""Exceptions of the package.

Every error a user can cause (bad upload, bad manifest, mismatched checkpoint) is an
:class:`XmrError`; its message is one line that says what was wrong and, where possible, what
to do. The CLI prints it without a traceback; the app shows it as a ``gr.Error``.
"""


class XmrError(Exception):
    """Base class of the errors a user can cause; the message is a single line."""


class InputError(XmrError, ValueError):
    """Untrusted input (audio, image, text) that cannot be used."""


class ConfigError(InputError):
    """A config (YAML, JSON, a checkpoint's ``config.json``) with an unknown key or an unusable value."""


class ManifestError(XmrError, ValueError):
    """A manifest or dataset file that does not follow the schema; names the row and column."""


class CheckpointMismatchError(XmrError):
    """A checkpoint and an index (or other artefact) built by different checkpoints."""


class MissingAssetError(XmrError, FileNotFoundError):
    """A bundled asset (checkpoint, index, manifest) is not there; says how to build it."""
