"""Video frames through PyAV. No shell, no ffmpeg command line: libav in-process."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from imaging.errors import CorruptImage, StorageError, UnsupportedMedia
from imaging.limits import Limits


def video_stream(container, path: Path, limits: Limits):
    """The first video stream of an open container, checked against the pixel limit."""
    if not container.streams.video:
        raise UnsupportedMedia(f"{path.name}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    limits.check_pixels(stream.codec_context.width or 1, stream.codec_context.height or 1, path.name)
    return stream


def first_frame(path: Path, limits: Limits) -> Image.Image:
    import av  # imported lazily: photo-only workers never load libav

    try:
        with av.open(str(path), mode="r") as container:
            stream = video_stream(container, path, limits)
            for frame in container.decode(stream):
                return frame.to_image()
    except (UnsupportedMedia, CorruptImage):
        raise
    except FileNotFoundError as e:
        raise StorageError(f"{path.name}: {e.strerror}") from e
    except av.error.InvalidDataError as e:
        raise CorruptImage(f"{path.name}: not a readable video ({e})") from e
    except av.error.FFmpegError as e:
        raise CorruptImage(f"{path.name}: cannot decode video ({e})") from e
    raise CorruptImage(f"{path.name}: the video has no decodable frame")
