"""One exception type per failure domain, so CLIs can print a one-line reason instead of a traceback."""


class IRSTDError(Exception):
    """Base class: a user-facing problem with a clear message."""


class DatasetError(IRSTDError):
    """A dataset directory, split, image or mask is missing or unreadable."""


class CheckpointError(IRSTDError):
    """A checkpoint is missing, corrupt or for another model."""


class ImageFormatError(IRSTDError):
    """An image cannot be interpreted (encoding, size, data length, values)."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (library messages, e.g. YAML errors, span several)."""
    return " ".join(str(exc).split())
