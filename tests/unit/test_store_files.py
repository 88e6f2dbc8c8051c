"""Reading a store file by a uri from outside: only plain files below the store."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from regen.imaging.store_files import (
    MAX_URI_CHARS,
    StoreFileMissing,
    StoreFileRefused,
    StoreFileTooLarge,
    read_store_file,
)

CAP = 1024


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    (root / "thumbnails" / "ab").mkdir(parents=True)
    (root / "thumbnails" / "ab" / "h400.jpg").write_bytes(b"jpeg bytes")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.jpg").write_bytes(b"not for the web")
    return folder


def test_a_file_in_the_store_is_read_whole(store):
    assert read_store_file(store, "thumbnails/ab/h400.jpg", CAP) == b"jpeg bytes"


def test_a_store_root_that_is_itself_a_symlink_is_the_operators_choice(store, tmp_path):
    (tmp_path / "link-to-store").symlink_to(store)
    assert read_store_file(tmp_path / "link-to-store", "thumbnails/ab/h400.jpg", CAP) == b"jpeg bytes"


def test_a_symlink_in_the_store_pointing_out_is_refused(store, outside):
    (store / "thumbnails" / "ab" / "evil.jpg").symlink_to(outside / "secret.jpg")
    with pytest.raises(StoreFileRefused, match="'thumbnails/ab/evil.jpg'"):
        read_store_file(store, "thumbnails/ab/evil.jpg", CAP)


def test_a_symlink_to_a_file_inside_the_store_is_refused_too(store):
    (store / "thumbnails" / "ab" / "alias.jpg").symlink_to(store / "thumbnails" / "ab" / "h400.jpg")
    with pytest.raises(StoreFileRefused):
        read_store_file(store, "thumbnails/ab/alias.jpg", CAP)


def test_a_symlinked_folder_on_the_way_is_refused(store, outside):
    (store / "thumbnails" / "cd").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreFileRefused, match="not a plain file"):
        read_store_file(store, "thumbnails/cd/secret.jpg", CAP)


def test_a_fifo_is_refused_without_waiting_for_a_writer(store):
    os.mkfifo(store / "thumbnails" / "ab" / "pipe.jpg")
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_store_file(store, "thumbnails/ab/pipe.jpg", CAP)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "opening a FIFO blocked"
    assert len(outcome) == 1 and isinstance(outcome[0], StoreFileRefused), outcome
    assert "not a regular file" in str(outcome[0])


def test_a_folder_is_not_a_file(store):
    with pytest.raises(StoreFileRefused, match="not a regular file"):
        read_store_file(store, "thumbnails/ab", CAP)


@pytest.mark.parametrize("uri", ["../outside/secret.jpg", "thumbnails/../../outside/secret.jpg",
                                 "thumbnails/ab/../ab/h400.jpg", "./thumbnails/ab/h400.jpg",
                                 "thumbnails//ab/h400.jpg", "thumbnails/ab/h400.jpg/"])
def test_dot_dot_dot_and_empty_components_are_refused(store, uri):
    with pytest.raises(StoreFileRefused, match="component"):
        read_store_file(store, uri, CAP)


def test_an_absolute_path_is_refused_even_inside_the_store(store):
    with pytest.raises(StoreFileRefused, match="absolute"):
        read_store_file(store, str(store / "thumbnails" / "ab" / "h400.jpg"), CAP)


def test_a_nul_byte_is_refused(store):
    with pytest.raises(StoreFileRefused, match="NUL"):
        read_store_file(store, "thumbnails/ab/h400.jpg\x00.png", CAP)


def test_over_long_names_are_refused(store):
    with pytest.raises(StoreFileRefused, match="over 255 bytes"):
        read_store_file(store, "thumbnails/" + "é" * 128 + ".jpg", CAP)
    with pytest.raises(StoreFileRefused, match=f"over {MAX_URI_CHARS} characters"):
        read_store_file(store, "a/" * MAX_URI_CHARS + "x.jpg", CAP)


def test_an_empty_path_is_refused(store):
    with pytest.raises(StoreFileRefused, match="empty"):
        read_store_file(store, "", CAP)


def test_a_missing_file_or_folder_is_missing_and_a_file_not_found_error(store):
    for uri in ("thumbnails/ab/nope.jpg", "thumbnails/zz/h400.jpg"):
        with pytest.raises(StoreFileMissing, match=repr(uri)) as caught:
            read_store_file(store, uri, CAP)
        assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(StoreFileMissing):
        read_store_file(store.parent / "no-store", "thumbnails/ab/h400.jpg", CAP)


def test_a_file_where_a_folder_is_expected_is_refused(store):
    with pytest.raises(StoreFileRefused):
        read_store_file(store, "thumbnails/ab/h400.jpg/more.jpg", CAP)


def test_a_file_over_the_cap_is_too_large_and_one_at_the_cap_is_read(store):
    (store / "big.png").write_bytes(b"x" * (CAP + 1))
    with pytest.raises(StoreFileTooLarge, match=f"{CAP + 1} bytes is over the {CAP}-byte cap"):
        read_store_file(store, "big.png", CAP)
    (store / "full.png").write_bytes(b"x" * CAP)
    assert read_store_file(store, "full.png", CAP) == b"x" * CAP
