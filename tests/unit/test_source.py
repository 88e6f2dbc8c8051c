"""Sources are opened once, below a media root, never through a symlink, and
only if they are regular files within the byte limit. Every test runs with
openat2 and with the component-by-component fallback."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from regen.imaging import source as source_module
from regen.imaging.errors import NotARegularFile, PathOutsideRoots, SourceChanged, SourceMissing, SourceTooLarge
from regen.imaging.limits import Limits
from regen.imaging.paths import relative_uri
from regen.imaging.source import OpenFile, OpenFolder, open_source

LIMITS = Limits()


@pytest.fixture(params=["openat2", "component walk"], autouse=True)
def resolution(request, monkeypatch):
    if request.param == "openat2" and not source_module._openat2_works():
        pytest.fail("this kernel has no openat2: the fallback is the only path tested")  # Linux >= 5.6 here
    monkeypatch.setattr(source_module, "FORCE_COMPONENT_WALK", request.param == "component walk")
    return request.param


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    media = tmp_path / "media"
    (media / "albums").mkdir(parents=True)
    (media / "albums" / "a.jpg").write_bytes(b"inside")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    return media, outside


def read(uri: str, roots: list[Path], limits: Limits = LIMITS) -> bytes:
    with open_source(uri, roots, limits) as f:
        assert isinstance(f, OpenFile)
        return f.read_all()


def test_relative_and_absolute_paths_inside_a_root_open(roots):
    media, _ = roots
    assert read("albums/a.jpg", [media]) == b"inside"
    assert read(str(media / "albums" / "a.jpg"), [media]) == b"inside"


@pytest.mark.parametrize("uri", ["../secret.txt", "albums/../../secret.txt", "albums/./../../secret.txt"])
def test_dot_dot_is_refused(roots, uri):
    media, _ = roots
    with pytest.raises(PathOutsideRoots, match=r"\.\."):
        read(uri, [media])


def test_absolute_path_elsewhere_is_refused(roots):
    media, outside = roots
    with pytest.raises(PathOutsideRoots, match="outside the media roots"):
        read(str(outside), [media])
    with pytest.raises(PathOutsideRoots):
        read("/etc/passwd", [media])


def test_symlinked_file_is_refused_even_if_it_points_inside(roots):
    media, outside = roots
    os.symlink(outside, media / "albums" / "out.jpg")
    os.symlink(media / "albums" / "a.jpg", media / "albums" / "in.jpg")
    for name in ("out.jpg", "in.jpg"):
        with pytest.raises(PathOutsideRoots, match="symlink"):
            read(f"albums/{name}", [media])


def test_symlinked_folder_on_the_way_is_refused(roots, tmp_path):
    media, _ = roots
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.jpg").write_bytes(b"y")
    os.symlink(elsewhere, media / "linked")
    with pytest.raises(PathOutsideRoots, match="symlink"):
        read("linked/b.jpg", [media])


def test_a_root_that_is_itself_a_symlink_is_followed(roots, tmp_path):
    """The roots are the operator's configuration, not an event's."""
    media, _ = roots
    os.symlink(media, tmp_path / "media-link")
    assert read("albums/a.jpg", [tmp_path / "media-link"]) == b"inside"


def test_fifo_is_refused_without_blocking(roots):
    media, _ = roots
    os.mkfifo(media / "albums" / "pipe.jpg")
    outcome: list[BaseException] = []
    opener = threading.Thread(target=lambda: outcome.append(_raises(lambda: read("albums/pipe.jpg", [media]))))
    opener.start()
    opener.join(5)
    assert not opener.is_alive(), "opening a FIFO blocked, waiting for a writer"
    assert isinstance(outcome[0], NotARegularFile) and "FIFO" in str(outcome[0])


def test_device_and_folder_are_refused(roots):
    media, _ = roots
    with pytest.raises(NotARegularFile, match="character device"):
        read("/dev/null", [Path("/dev")])
    with pytest.raises(NotARegularFile, match="folder"):
        read("albums", [media])


def test_size_is_checked_before_reading(roots):
    media, _ = roots
    big = media / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(5 * 1024**3)  # sparse: 5 GB that would take seconds to hash
    with pytest.raises(SourceTooLarge, match="byte limit"):
        read("big.jpg", [media], Limits(max_bytes=1000))
    with pytest.raises(SourceTooLarge):
        read("big.jpg", [media])


def test_nul_byte_empty_and_overlong_are_refused(roots):
    media, _ = roots
    for uri in ("", "albums/a.jpg\x00.png", "a/" * 3000):
        with pytest.raises(PathOutsideRoots):
            read(uri, [media])
    with pytest.raises(PathOutsideRoots, match="too long"):
        read("x" * 300 + ".jpg", [media])


def test_no_roots_configured_is_refused():
    with pytest.raises(PathOutsideRoots, match="REGEN_MEDIA_ROOTS"):
        read("a.jpg", [])


def test_missing_file_inside_a_root_is_retriable(roots):
    media, _ = roots
    with pytest.raises(SourceMissing) as info:
        read("albums/not-yet.jpg", [media])
    assert not info.value.permanent


def test_second_root_is_searched(roots, tmp_path):
    media, _ = roots
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.jpg").write_bytes(b"z")
    assert read("c.jpg", [media, other]) == b"z"


def test_a_swap_after_opening_changes_nothing(roots):
    """The check-then-open race: once open, replacing the name with a symlink
    to a secret is invisible to the reader (it holds the original file)."""
    media, outside = roots
    with open_source("albums/a.jpg", [media], LIMITS) as f:
        os.unlink(media / "albums" / "a.jpg")
        os.symlink(outside, media / "albums" / "a.jpg")
        assert f.read_all() == b"inside"


def test_a_file_modified_in_place_is_noticed(roots):
    media, _ = roots
    with open_source("albums/a.jpg", [media], LIMITS) as f:
        with open(media / "albums" / "a.jpg", "ab") as w:
            w.write(b" and more")
        with pytest.raises(SourceChanged):
            f.check_unchanged()


def test_folder_entries_are_confined_too(roots):
    media, outside = roots
    frames = media / "frames"
    frames.mkdir()
    (frames / "frame_0.png").write_bytes(b"f0")
    os.symlink(outside, frames / "frame_1.png")
    with open_source("frames", [media], LIMITS, allow_folder=True) as folder:
        assert isinstance(folder, OpenFolder)
        with folder.open_entry("frame_0.png", LIMITS) as f:
            assert f.read_all() == b"f0"
        with pytest.raises(PathOutsideRoots, match="symlink"):
            folder.open_entry("frame_1.png", LIMITS)
        with pytest.raises(PathOutsideRoots):
            folder.open_entry("../secret.txt", LIMITS)


def test_undecodable_names_give_printable_errors(roots):
    media, _ = roots
    name = os.fsdecode(b"bad-\xff-name.jpg")
    with pytest.raises(SourceMissing) as info:
        read(f"albums/{name}", [media])
    str(info.value).encode("utf-8")  # valid UTF-8: it can travel in an event
    assert "\\xff" in str(info.value)


def test_relative_uri_round_trips(roots):
    media, outside = roots
    assert relative_uri(media / "albums" / "a.jpg", [media]) == "albums/a.jpg"
    with pytest.raises(PathOutsideRoots):
        relative_uri(outside, [media])


def _raises(fn) -> BaseException | None:
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - handed to the asserting thread
        return e
    return None
