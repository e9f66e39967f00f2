"""Exceptions whose message is a complete one-line explanation for the user.

The CLI prints ``error: <message>`` and exits with status 2 for any of them; anything else is a bug.
"""


class Bert4RecError(Exception):
    """Base class: the message names the file, column or value at fault."""


class DataError(Bert4RecError):
    """Input data is missing, malformed or empty after filtering."""


class DownloadError(Bert4RecError):
    """A release could not be fetched or failed its integrity check."""


class ModelFolderError(Bert4RecError):
    """A model folder is missing, incomplete, corrupt or from an incompatible version."""


class ChangedFileError(Bert4RecError):
    """A file whose contents differ from the SHA-256 recorded when bert4rec wrote it."""


class UnknownUserError(Bert4RecError):
    """A user id that the model's data does not contain."""


class UnknownItemError(Bert4RecError):
    """Movie ids that are not in the model's catalogue."""


class TitleNotFoundError(Bert4RecError):
    """A title that matches no movie."""


class AmbiguousTitleError(Bert4RecError):
    """A title that matches several movies equally well; ``candidates`` lists them."""

    def __init__(self, message: str, candidates: list[dict]):
        super().__init__(message)
        self.candidates = candidates


class InvalidRequestError(Bert4RecError):
    """A parameter out of range (k, filters, history length)."""


class StoreError(Bert4RecError):
    """The event store cannot be reached, is not initialised, or refused a write."""
