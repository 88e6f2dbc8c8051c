"""Event paths never leave the media roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imaging.errors import PathOutsideRoots, SourceMissing
from imaging.paths import relative_uri, resolve_media_path


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    media = tmp_path / "media"
    (media / "albums").mkdir(parents=True)
    (media / "albums" / "a.jpg").write_bytes(b"x")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    return media, outside


def test_relative_path_inside_a_root_resolves(roots):
    media, _ = roots
    assert resolve_media_path("albums/a.jpg", [media]) == (media / "albums" / "a.jpg").resolve()


def test_absolute_path_inside_a_root_resolves(roots):
    media, _ = roots
    assert resolve_media_path(str(media / "albums" / "a.jpg"), [media]).name == "a.jpg"


@pytest.mark.parametrize("uri", ["../secret.txt", "albums/../../secret.txt", "albums/./../../secret.txt"])
def test_dot_dot_is_refused(roots, uri):
    media, _ = roots
    with pytest.raises(PathOutsideRoots, match=r"\.\."):
        resolve_media_path(uri, [media])


def test_absolute_path_elsewhere_is_refused(roots):
    media, outside = roots
    with pytest.raises(PathOutsideRoots, match="outside the media roots"):
        resolve_media_path(str(outside), [media])
    with pytest.raises(PathOutsideRoots):
        resolve_media_path("/etc/passwd", [media])


def test_symlink_pointing_out_is_refused(roots):
    media, outside = roots
    os.symlink(outside, media / "albums" / "link.jpg")
    with pytest.raises(PathOutsideRoots):
        resolve_media_path("albums/link.jpg", [media])


def test_symlinked_directory_pointing_out_is_refused(roots, tmp_path):
    media, _ = roots
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.jpg").write_bytes(b"y")
    os.symlink(elsewhere, media / "linked")
    with pytest.raises(PathOutsideRoots):
        resolve_media_path("linked/b.jpg", [media])


def test_nul_byte_and_empty_are_refused(roots):
    media, _ = roots
    for uri in ("", "albums/a.jpg\x00.png"):
        with pytest.raises(PathOutsideRoots):
            resolve_media_path(uri, [media])


def test_no_roots_configured_is_refused():
    with pytest.raises(PathOutsideRoots, match="REGEN_MEDIA_ROOTS"):
        resolve_media_path("a.jpg", [])


def test_missing_file_inside_a_root_is_retriable(roots):
    media, _ = roots
    with pytest.raises(SourceMissing) as info:
        resolve_media_path("albums/not-yet.jpg", [media])
    assert not info.value.permanent


def test_second_root_is_searched(roots, tmp_path):
    media, _ = roots
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.jpg").write_bytes(b"z")
    assert resolve_media_path("c.jpg", [media, other]).parent == other.resolve()


def test_relative_uri_round_trips(roots):
    media, outside = roots
    assert relative_uri(media / "albums" / "a.jpg", [media]) == "albums/a.jpg"
    with pytest.raises(PathOutsideRoots):
        relative_uri(outside, [media])
