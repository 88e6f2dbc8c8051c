"""Store files whose content hash was already verified, so that a replay
finding everything intact reads an unchanged output once, not on every run.

A file counts as verified when everything that changes with its content
is as it was when it was hashed: device, inode, size, mtime and ctime (in
ns). A file rewritten in place has a new ctime, which no unprivileged
process can set back (mtime it can: ``touch -d``); a file swapped in by a
rename or copy has another inode. Anything else is read and hashed again,
from the one descriptor opened confined to the store, exactly as
``output_problem`` does (imaging/store.py), so the answers are the same.

Kept in the state directory, which is trusted like the tables' RocksDB
beside it; even so a cache file that does not parse is ignored, never
believed. Blocking I/O: callers on an event loop run this in a thread.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import orjson

from regen.imaging.source import open_beneath
from regen.imaging.store import MAX_OUTPUT_BYTES, write_atomically
from regen.imaging.store_files import StoreFileRefused, StoreFileTooLarge, _read_regular, store_uri_parts

CACHE_NAME = "verified-outputs.json"
# The cache is one JSON file read whole: past this, it is started afresh.
MAX_CACHE_BYTES = 256 * 1024 * 1024
# A file changed this recently is not recorded: a write within the same
# timestamp tick (ext4 stamps advance a few ms at a time) would leave its
# stamps as they were when it was hashed ("racy git" has the same rule).
RACY_S = 2.0

Stamp = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns


class VerifiedOutputs:
    def __init__(self, store: Path, state_dir: Path) -> None:
        self.store = Path(store)
        self.path = Path(state_dir) / "replay" / CACHE_NAME
        self._known: dict[str, tuple[Stamp, str]] = self._load()
        self._changed = False
        self.hashed = 0  # files read and hashed (not answered from the cache)

    def problem(self, uri: str, size: int, sha256: str) -> str | None:
        """As ``imaging.store.output_problem``: "missing", "truncated",
        "changed", "unreadable" or None."""
        try:
            fd = open_beneath(self.store, store_uri_parts(uri))
        except FileNotFoundError:
            self._forget(uri)
            return "missing"
        except (StoreFileRefused, OSError):
            self._forget(uri)
            return "unreadable"
        try:
            info = os.fstat(fd)
            stamp = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            if stat.S_ISREG(info.st_mode) and info.st_size == size and self._known.get(uri) == (stamp, sha256):
                return None
            return self._hash(fd, uri, size, sha256, stamp)
        finally:
            os.close(fd)

    def _hash(self, fd: int, uri: str, size: int, sha256: str, stamp: Stamp) -> str | None:
        self.hashed += 1
        try:
            data = _read_regular(fd, uri, min(max(size, 0), MAX_OUTPUT_BYTES))
        except StoreFileTooLarge:
            problem: str | None = "changed"
        except (StoreFileRefused, OSError):
            problem = "unreadable"
        else:
            problem = ("truncated" if len(data) < size else
                       "changed" if hashlib.sha256(data).hexdigest() != sha256 else None)
        if problem is None and time.time() - stamp[4] / 1e9 > RACY_S:
            self._known[uri] = (stamp, sha256)
            self._changed = True
        else:
            self._forget(uri)
        return problem

    def _forget(self, uri: str) -> None:
        if self._known.pop(uri, None) is not None:
            self._changed = True

    def save(self) -> None:
        """Write the cache if anything changed (atomically: an interrupted
        save leaves the previous one)."""
        if not self._changed:
            return
        body = {"store": str(self.store),
                "files": {uri: [*stamp, digest] for uri, (stamp, digest) in self._known.items()}}
        write_atomically(self.path, orjson.dumps(body))
        self._changed = False

    def _load(self) -> dict[str, tuple[Stamp, str]]:
        try:
            if self.path.stat().st_size > MAX_CACHE_BYTES:
                return {}
            body = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        if not isinstance(body, dict) or body.get("store") != str(self.store):
            return {}
        if not isinstance(body.get("files"), dict):
            return {}
        known: dict[str, tuple[Stamp, str]] = {}
        for uri, entry in body["files"].items():
            if (isinstance(entry, list) and len(entry) == 6 and all(type(n) is int for n in entry[:5])
                    and isinstance(entry[5], str)):
                known[uri] = (tuple(entry[:5]), entry[5])  # type: ignore[assignment]
        return known
