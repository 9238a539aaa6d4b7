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


def check_positive_int(
    value, name: str, example, minimum: int = 1, error: type = CourseError
) -> int:
    """``value`` as an int if it is an integer >= ``minimum``, else ``error`` saying what was given and the fix.

    The one check behind every count the package takes (epochs, samples, steps,
    sizes). Booleans are refused (``True`` is an int to Python, never a count);
    numpy integers are accepted. ``example`` is a value to suggest in the fix.
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(f"{name} must be {expected}, got {value!r}. Fix: e.g. {name}={example!r}.")
    return int(value)


__all__ = [
    "check_positive_int",
    "CourseError",
    "DataError",
    "CheckpointError",
    "TrainingDiverged",
    "BackendError",
]
