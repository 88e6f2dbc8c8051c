"""Typed render errors.

Every error says whether retrying can help: ``permanent`` errors (a corrupt or
unsupported file, a file over the limits, a path outside the media roots) fail
a job at once; retriable ones (I/O, a source not there yet) are retried.
"""


class ImagingError(Exception):
    """Base of every error raised by imaging code."""

    permanent = True
    code = "imaging_error"

    def __init__(self, message: str):
        # Messages quote file names, which on Linux are bytes: one that is not
        # UTF-8 arrives as lone surrogates, which no JSON encoder accepts.
        message = printable(message)
        super().__init__(message)
        self.message = message


def printable(text: str, limit: int = 2000) -> str:
    """``text`` as valid UTF-8, undecodable bytes shown as \\xNN, cut to ``limit``."""
    clean = _escape_undecodable(text) if _has_surrogates(text) else text
    return clean if len(clean) <= limit else clean[:limit] + "…"


def _escape_undecodable(text: str) -> str:
    try:  # bytes os.fsdecode could not decode come back as themselves
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # other lone surrogates (from JSON "\\ud800" escapes)
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class InvalidVariant(ImagingError):
    code = "invalid_variant"


class PathOutsideRoots(ImagingError):
    code = "outside_media_roots"


class CorruptImage(ImagingError):
    code = "corrupt"


class UnsupportedMedia(ImagingError):
    code = "unsupported"


class NotARegularFile(ImagingError):
    """A FIFO, device, socket or folder where a file was expected."""

    code = "not_a_file"


class SourceTooLarge(ImagingError):
    code = "too_large"


class ResourceLimit(ImagingError):
    """Over a memory, pixel-budget or time budget while decoding: the same
    input would hit the same wall, so it is not retried."""

    code = "resource_limit"


class SourceChanged(ImagingError):
    """The file's content no longer matches the sha256 it was imported with."""

    code = "source_changed"


class InvalidOverlay(ImagingError):
    """A render job whose segmentation does not read as one (forged or
    corrupted on its lane): no retry can change it."""

    code = "invalid_overlay"


class SourceMissing(ImagingError):
    """Not there (yet): an upload may still be landing, so this is retriable."""

    permanent = False
    code = "source_missing"


class StorageError(ImagingError):
    """Reading the source or writing the output failed with an OS error."""

    permanent = False
    code = "io_error"
