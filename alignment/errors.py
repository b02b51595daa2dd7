"""One exception type per failure a user can act on."""


class AlignmentError(Exception):
    """Base class: every error the platform raises on purpose."""


class ConfigError(AlignmentError):
    """A config file or override is invalid; the message names the field."""


class DataFormatError(AlignmentError):
    """An input file cannot be read at all (unreadable, unknown format)."""


class ValidationFailed(AlignmentError):
    """A set-level data check failed (for example, too many rows rejected)."""


class DataDrift(AlignmentError):
    """A new data version is past a drift threshold from the champion's (quality.drift)."""


class VersioningError(AlignmentError):
    """DVC could not record or push a data version."""


class ModelSourceError(AlignmentError):
    """A base model could not be found or built."""


class TrainingFailed(AlignmentError):
    """A training job exited with an error; the message carries the tail of its log."""


class PeerLost(TrainingFailed):
    """A process of a multi-process job died or stopped answering; resume once nodes are back."""


class RegistryError(AlignmentError):
    """The model registry refused an operation."""


class ManifestMismatch(AlignmentError):
    """A landing manifest is malformed or a landing file's sha256 differs from it."""


class LandingFileChanged(AlignmentError):
    """A landing file's bytes changed after a data version was made from it."""


class SoftLabelError(AlignmentError):
    """A record's scores are not the preference probability that soft-label training needs."""


class EmptyGenerations(AlignmentError):
    """A model generated nothing usable; the message says how many texts, for which prompts."""


class PermissionDenied(RegistryError):
    """The registry server refused this account (HTTP 403); the message names the account,
    the registered model and the permission the operation needs."""
