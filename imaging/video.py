"""Video frames through PyAV. No shell, no ffmpeg command line: libav in-process.

FFmpeg never opens a path itself: it reads the already-confined descriptor
through a file object, may only use the demuxers in the allow-list (a
playlist such as HLS, or concat, would open further files and URLs named
inside the file), and may open no protocol at all, so not even an allowed
demuxer can reach another file.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

from PIL import Image

from regen.imaging.errors import CorruptImage, ResourceLimit, UnsupportedMedia
from regen.imaging.limits import Limits
from regen.imaging.source import OpenFile


class UnsupportedContainer(UnsupportedMedia):
    code = "unsupported_container"


def open_container(source: OpenFile, limits: Limits) -> Any:
    """An input container on ``source``, by an allowed demuxer only."""
    import av  # imported lazily: photo-only workers never load libav

    allowed = ",".join(limits.video_containers)
    options = {"format_whitelist": allowed, "protocol_whitelist": "none"}
    try:
        container = av.open(source.stream(), mode="r", options=options)
    except av.error.FFmpegError as e:
        if e.errno == errno.EINVAL:  # what FFmpeg says when no allowed demuxer takes the input
            raise UnsupportedContainer(f"{source.name}: not a video in an allowed container "
                                       f"({allowed}; REGEN_VIDEO_CONTAINERS)") from e
        raise CorruptImage(f"{source.name}: not a readable video ({e.strerror or e})") from e
    except MemoryError as e:
        raise ResourceLimit(f"{source.name}: opening the video needs more memory than allowed") from e
    # A second look, in case a build of FFmpeg ignored the option.
    if not set(container.format.name.split(",")) & set(limits.video_containers):
        container.close()
        raise UnsupportedContainer(f"{source.name}: container {container.format.name!r} is not allowed "
                                   f"({allowed}; REGEN_VIDEO_CONTAINERS)")
    return container


def video_stream(container: Any, name: str, limits: Limits) -> Any:
    """The first video stream of an open container, checked against the
    pixel limit by its header (every decoded frame is checked again)."""
    if not container.streams.video:
        raise UnsupportedMedia(f"{name}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    limits.check_pixels(stream.codec_context.width or 1, stream.codec_context.height or 1, name)
    return stream


def checked_frames(container: Any, stream: Any, name: str, limits: Limits) -> Iterator[Any]:
    """Decoded frames, each checked against the pixel limit: a header can
    claim 64x64 for a stream whose frames are 12000x12000."""
    for frame in container.decode(stream):
        limits.check_pixels(frame.width, frame.height, f"{name} (a decoded frame)")
        yield frame


def first_frame(source: OpenFile, limits: Limits) -> Image.Image:
    import av

    try:
        with open_container(source, limits) as container:
            stream = video_stream(container, source.name, limits)
            for frame in checked_frames(container, stream, source.name, limits):
                return frame.to_image()
    except av.error.FFmpegError as e:
        raise CorruptImage(f"{source.name}: cannot decode video ({e.strerror or e})") from e
    except MemoryError as e:
        raise ResourceLimit(f"{source.name}: decoding needs more memory than a render process may use "
                            f"(REGEN_RENDER_MEMORY_MB)") from e
    raise CorruptImage(f"{source.name}: the video has no decodable frame")
