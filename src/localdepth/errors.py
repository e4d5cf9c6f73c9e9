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


class StorageError(LocalDepthError):
    """A file or folder could not be written (or read): a full disk, a read-only folder, a path
    through a file, a cache folder that cannot be created."""


class OutputClashError(LocalDepthError):
    """A named output is one of the command's inputs, or another of its outputs."""


#: what to do about the common reasons, after the system's own words
_STORAGE_HINTS = {
    "ENOSPC": "free some space or choose another folder",
    "EDQUOT": "free some space or choose another folder",
    "EFBIG": "the file is over a size limit of this system or process",
    "EROFS": "the filesystem is read-only: choose a folder you can write to",
    "EACCES": "choose a folder you can write to",
    "EPERM": "choose a folder you can write to",
    "ENOTDIR": "a part of the path is a file, not a folder",
    "EEXIST": "a file is in the way of a folder",
}


def storage_error(error: OSError, path=None, action: str = "write", hint: str | None = None) -> StorageError:
    """One line for an ``OSError`` of the filesystem: what could not be done to which path, the
    system's reason with its errno name, and what to do: ``cannot write out/a.npy: No space left
    on device (ENOSPC); free some space or choose another folder``. ``path`` names the file the
    user knows (a temporary file's final name); default: the error's own file name. ``hint``
    replaces the usual advice."""
    import errno as errno_names

    from .safety import quoted

    where = path if path is not None else (error.filename if error.filename is not None else "")
    reason = error.strerror or (str(error).splitlines()[0] if str(error).strip() else type(error).__name__)
    code = errno_names.errorcode.get(error.errno or -1)
    hint = hint or _STORAGE_HINTS.get(code or "")
    text = f"cannot {action} {quoted(where)}: {reason}" if where != "" else f"cannot {action}: {reason}"
    return StorageError(text + (f" ({code})" if code else "") + (f"; {hint}" if hint else ""))
