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
        super().__init__(message)
        self.message = message


class InvalidVariant(ImagingError):
    code = "invalid_variant"


class PathOutsideRoots(ImagingError):
    code = "outside_media_roots"


class CorruptImage(ImagingError):
    code = "corrupt"


class UnsupportedMedia(ImagingError):
    code = "unsupported"


class SourceTooLarge(ImagingError):
    code = "too_large"


class SourceChanged(ImagingError):
    """The file's content no longer matches the sha256 it was imported with."""

    code = "source_changed"


class SourceMissing(ImagingError):
    """Not there (yet): an upload may still be landing, so this is retriable."""

    permanent = False
    code = "source_missing"


class StorageError(ImagingError):
    """Reading the source or writing the output failed with an OS error."""

    permanent = False
    code = "io_error"
