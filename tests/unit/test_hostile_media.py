"""Hostile and broken sources, through the render tasks a worker runs: each
ends in a typed, permanent error, and no outside pixels reach the store."""

from __future__ import annotations

import io
import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from regen.cli.samples import write_video
from regen.imaging.errors import (
    CorruptImage,
    ImagingError,
    NotARegularFile,
    PathOutsideRoots,
    ResourceLimit,
    SourceTooLarge,
)
from regen.imaging.limits import Limits
from regen.imaging.render import CompositeTask, ThumbnailTask, run_composite_task, run_thumbnail_task
from regen.imaging.thumbnails import thumbnail_image
from regen.imaging.variants import parse_variant
from regen.imaging.video import UnsupportedContainer
from tests.helpers import write_ts


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the media root holding what an attacker wants read."""
    folder = tmp_path / "outside"
    folder.mkdir()
    Image.new("RGB", (64, 48), (255, 0, 0)).save(folder / "secret.png")
    write_ts(folder / "secret.ts", (64, 48), 10)
    return folder


def thumbnail(media: Path, store: Path, uri: str, media_type: str = "", limits: Limits = Limits()):
    return run_thumbnail_task(ThumbnailTask(uri, "", "h200.jpg", (media,), store, limits=limits,
                                            media_type=media_type))


def composite(media: Path, store: Path, uri: str, end: int = 0, limits: Limits = Limits(), force: bool = False):
    return run_composite_task(CompositeTask(uri, 0, end, None, "full.png", (media,), store, limits=limits,
                                            force=force))


def assert_store_empty(store: Path) -> None:
    written = [p for p in store.rglob("*") if p.is_file()] if store.exists() else []
    assert written == [], f"something reached the store: {written}"


def test_a_symlinked_frame_is_refused(media, outside, tmp_path):
    frames = media / "frames"
    frames.mkdir()
    os.symlink(outside / "secret.png", frames / "frame_0.png")
    with pytest.raises(PathOutsideRoots, match="symlink"):
        composite(media, tmp_path / "store", "frames")
    assert_store_empty(tmp_path / "store")


@pytest.mark.parametrize("target", ["/OUTSIDE/secret.ts", "../outside/secret.ts"])
def test_a_playlist_is_refused_for_thumbnails_and_composites(media, outside, tmp_path, target):
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{}\n#EXT-X-ENDLIST\n".format(
        target.replace("/OUTSIDE", str(outside)))
    for name in ("evil.m3u8", "evil.mp4"):
        (media / name).write_text(playlist)
        with pytest.raises((UnsupportedContainer, CorruptImage)) as thumb:
            thumbnail(media, tmp_path / "store", name, media_type="video")
        assert thumb.value.permanent
        with pytest.raises((UnsupportedContainer, CorruptImage)):
            composite(media, tmp_path / "store", name, end=2)
    assert_store_empty(tmp_path / "store")
    # The attack is real: FFmpeg left to itself follows the playlist outside.
    with av.open(str(media / "evil.m3u8")) as container:
        assert container.format.name == "hls" and next(container.decode(video=0)).width == 64


def test_a_container_outside_the_allow_list_is_refused(media, tmp_path):
    write_ts(media / "clip.ts", (64, 48), 5)
    assert thumbnail(media, tmp_path / "store", "clip.ts", media_type="video").width > 0
    with pytest.raises(UnsupportedContainer, match="REGEN_VIDEO_CONTAINERS"):
        thumbnail(media, tmp_path / "other", "clip.ts", media_type="video", limits=Limits(video_containers=("mov",)))


def test_a_fifo_source_is_refused_without_blocking(media, tmp_path):
    os.mkfifo(media / "clip.mp4")
    with pytest.raises(NotARegularFile, match="FIFO"):
        composite(media, tmp_path / "store", "clip.mp4")
    with pytest.raises(NotARegularFile, match="FIFO"):
        thumbnail(media, tmp_path / "store", "clip.mp4")


def test_a_postscript_file_named_jpg_never_reaches_the_eps_plugin(media, tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(self))
    (media / "photo.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(CorruptImage, match="REGEN_IMAGE_FORMATS"):
        thumbnail(media, tmp_path / "store", "photo.jpg")
    assert opened == []


def test_frames_larger_than_the_header_claims_are_refused(media, tmp_path):
    """A stream whose header says 64x64 and whose later frames are 1600x1200:
    every decoded frame is checked, not only the header."""
    small, large = write_ts(tmp_path / "a.ts", (64, 64), 4), write_ts(tmp_path / "b.ts", (1600, 1200), 4)
    (media / "growing.ts").write_bytes(small.read_bytes() + large.read_bytes())
    limits = Limits(max_pixels=1_000_000)
    with pytest.raises(SourceTooLarge, match="decoded frame"):
        composite(media, tmp_path / "store", "growing.ts", end=7, limits=limits)


def test_a_span_over_the_pixel_budget_fails_before_it_is_held(media, tmp_path):
    clip = write_video(media / "clip.mp4", frames=10, size=(320, 240))
    assert clip.exists()
    limits = Limits(composite_pixels=5 * 320 * 240)
    with pytest.raises(ResourceLimit, match="REGEN_COMPOSITE_PIXEL_BUDGET") as info:
        composite(media, tmp_path / "store", "clip.mp4", end=9, limits=limits)
    assert info.value.permanent and info.value.code == "resource_limit"
    assert composite(media, tmp_path / "store", "clip.mp4", end=4, limits=limits).width == 320


def test_a_span_over_its_decode_time_budget_gives_up(media, tmp_path):
    write_video(media / "clip.mp4", frames=10, size=(320, 240))
    with pytest.raises(ResourceLimit, match="REGEN_DECODE_BUDGET"):
        composite(media, tmp_path / "store", "clip.mp4", end=9, limits=Limits(decode_seconds=1e-9))


def test_huge_frame_numbers_are_a_typed_error(media, tmp_path):
    write_video(media / "clip.mp4", frames=4, size=(64, 48))
    for end in (2**62, 2**31):
        with pytest.raises(ImagingError) as info:
            run_composite_task(CompositeTask("clip.mp4", 2**31 - 2 if end == 2**31 else end - 1, end, None,
                                             "full.png", (media,), tmp_path / "store"))
        assert info.value.permanent


def test_rewriting_a_frame_folder_renders_anew(media, tmp_path):
    """A composite is named by the content it reads: new frames under the
    same names are never answered with the old image."""
    frames = media / "frames"
    frames.mkdir()
    for value in (10, 20):
        for i in range(3):
            Image.new("RGB", (32, 24), (value, value, value)).save(frames / f"frame_{i}.png")
        os.utime(frames, (1_000_000, 1_000_000))  # same folder times both rounds
        done = composite(media, tmp_path / "store", "frames", end=2)
        assert not done.cache_hit
        with Image.open(done.path) as im:
            assert im.getpixel((0, 0)) == (value, value, value)


def damaged_copies(data: bytes) -> list[bytes]:
    """Copies of ``data`` cut short, or with one byte flipped in the pixel data."""
    cuts = [data[:cut] for cut in range(len(data) // 3, len(data) - 12, max(1, len(data) // 40))]
    flips = []
    for position in range(100, len(data) - 20, max(1, len(data) // 60)):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        flips.append(bytes(flipped))
    return cuts + flips


def decodes_whole(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not whole"
        return False


def test_a_damaged_png_is_never_a_thumbnail():
    """Reading EXIF decodes a PNG; a decode error there must not be swallowed
    and the partial pixels thumbnailed by a second load()."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(buffer, "PNG")
    broken = [copy for copy in damaged_copies(buffer.getvalue()) if not decodes_whole(copy)]
    assert len(broken) > 50
    for copy in broken:
        with pytest.raises(CorruptImage):
            thumbnail_image(copy, parse_variant("h200.png"), Limits(), "damaged.png")
