"""The package's errors: one base class, one subclass per kind of failure.

Every message names the input, says what was expected, and ends with a
``Fix:``. They are ``ValueError``\\ s, so code that catches ``ValueError``
(the command line does) catches them too.
"""

from __future__ import annotations


class CourseError(ValueError):
    """Base class of the errors vae_course raises about its inputs and runs."""


class DataError(CourseError):
    """Missing, truncated or corrupt data files, and bad arrays."""


class CheckpointError(CourseError):
    """A checkpoint or history file that is missing, truncated, corrupt or not a course VAE."""


class TrainingDiverged(CourseError):
    """Training stopped because the loss (or a weight) became NaN or infinite."""


class BackendError(CourseError, ImportError):
    """Keras was imported with a backend other than torch before vae_course."""


__all__ = ["CourseError", "DataError", "CheckpointError", "TrainingDiverged", "BackendError"]
