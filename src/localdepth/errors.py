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


class PromptDepthError(LocalDepthError):
    """A prompt depth map is missing where a model needs one, given where it takes none, or unreadable."""


class FetchError(ImageDecodeError):
    """An image URL could not be fetched (refused, too large, too slow, or an HTTP error)."""


class CameraError(LocalDepthError):
    """The camera a map needs is unusable (a model's invalid prediction) or badly given."""
