"""Exceptions with one-line messages that say what to do."""


class LocalDepthError(Exception):
    """Base class: the message is shown to users as one line."""


class ModelNotFoundError(LocalDepthError):
    pass


class WeightsError(LocalDepthError):
    """Weights are missing, unreachable, corrupt or do not match their checksum."""


class ChecksumError(WeightsError):
    pass


class ImageDecodeError(LocalDepthError):
    """An input is not a readable image."""


class BackendError(LocalDepthError):
    pass
