"""The replay's cache of verified store files: an unchanged file is not read
again, and no change to a file's bytes (in place with its mtime put back,
by a swapped-in file, by a symlink) is missed."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import orjson
import pytest

from regen.imaging import verified_outputs
from regen.imaging.store import output_problem
from regen.imaging.verified_outputs import VerifiedOutputs

URI = "ab/cd/out.jpg"


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr(verified_outputs, "RACY_S", 0.0)  # files written a moment ago may be recorded
    (tmp_path / "store" / "ab" / "cd").mkdir(parents=True)
    (tmp_path / "store" / URI).write_bytes(b"original bytes" * 100)
    return tmp_path / "store"


def past_ctime_tick(path: Path) -> None:
    """Wait until the coarse clock file stamps come from (a tick is at most
    10 ms, at HZ=100) has passed ``path``'s ctime, so a change now gets
    another ctime: a test of the ctime check, not of the RACY_S guard that
    covers the same tick in real use."""
    while time.time_ns() <= path.stat().st_ctime_ns + 20_000_000:
        time.sleep(0.005)


def check_twice(store: Path, state: Path, size: int, digest: str) -> tuple[str | None, int]:
    """The answer of a fresh cache (as a second replay has it) and how many files it read."""
    cache = VerifiedOutputs(store, state)
    answer = cache.problem(URI, size, digest)
    cache.save()
    assert answer == output_problem(store, URI, size, digest), "the same answer as the uncached check"
    return answer, cache.hashed


def test_an_unchanged_file_is_read_once_and_then_answered_from_the_cache(store: Path, tmp_path: Path):
    data = (store / URI).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert check_twice(store, tmp_path / "state", len(data), digest) == (None, 1)
    assert check_twice(store, tmp_path / "state", len(data), digest) == (None, 0)
    # The recorded hash is part of the key: another recorded output is checked again.
    assert check_twice(store, tmp_path / "state", len(data), "0" * 64) == ("changed", 1)


def test_bytes_changed_in_place_with_size_and_mtime_put_back_are_found(store: Path, tmp_path: Path):
    path = store / URI
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert check_twice(store, tmp_path / "state", len(data), digest) == (None, 1)
    before = path.stat()
    past_ctime_tick(path)
    with open(path, "r+b") as f:  # same inode, same size
        f.write(b"X")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the mtime a forger can set back
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    assert check_twice(store, tmp_path / "state", len(data), digest) == ("changed", 1)


def test_a_swapped_in_file_and_a_symlink_are_found(store: Path, tmp_path: Path):
    path = store / URI
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert check_twice(store, tmp_path / "state", len(data), digest) == (None, 1)
    other = store / "other.jpg"
    other.write_bytes(data[:-1] + b"Y")
    os.utime(other, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    other.replace(path)  # another inode under the same name
    assert check_twice(store, tmp_path / "state", len(data), digest) == ("changed", 1)

    outside = tmp_path / "outside.jpg"
    outside.write_bytes(data)
    path.unlink()
    path.symlink_to(outside)
    assert check_twice(store, tmp_path / "state", len(data), digest) == ("unreadable", 0)
    path.unlink()
    assert check_twice(store, tmp_path / "state", len(data), digest) == ("missing", 0)


def test_a_file_changed_a_moment_ago_is_not_recorded(store: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(verified_outputs, "RACY_S", 3600.0)
    data = (store / URI).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert check_twice(store, tmp_path / "state", len(data), digest) == (None, 1)
    assert check_twice(store, tmp_path / "state", len(data), digest) == (None, 1)


@pytest.mark.parametrize("cache_text", [b"not json", b"[]", b'{"store": "/elsewhere", "files": {}}',
                                        b'{"files": {"ab/cd/out.jpg": "nonsense"}}'])
def test_a_cache_file_that_does_not_parse_is_ignored(store: Path, tmp_path: Path, cache_text: bytes):
    data = (store / URI).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cache_file = tmp_path / "state" / "replay" / verified_outputs.CACHE_NAME
    cache_file.parent.mkdir(parents=True)
    cache_file.write_bytes(cache_text)
    assert check_twice(store, tmp_path / "state", len(data), digest) == (None, 1)
    assert orjson.loads(cache_file.read_bytes())["store"] == str(store)
