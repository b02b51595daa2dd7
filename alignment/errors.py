"""One exception type per failure a user can act on."""


class AlignmentError(Exception):
    """Base class: every error the platform raises on purpose."""


class ConfigError(AlignmentError):
    """A config file or override is invalid; the message names the field."""


class DataFormatError(AlignmentError):
    """An input file cannot be read at all (unreadable, unknown format)."""


class ValidationFailed(AlignmentError):
    """A set-level data check failed (for example, too many rows rejected)."""


class VersioningError(AlignmentError):
    """DVC could not record or push a data version."""


class ModelSourceError(AlignmentError):
    """A base model could not be found or built."""


class TrainingFailed(AlignmentError):
    """A training job exited with an error; the message carries the tail of its log."""


class RegistryError(AlignmentError):
    """The model registry refused an operation."""


class EmptyGenerations(AlignmentError):
    """A model generated nothing usable; the message says how many texts, for which prompts."""
