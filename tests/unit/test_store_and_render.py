from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from regen.imaging.errors import SourceChanged
from regen.imaging.render import ThumbnailTask, run_thumbnail_task
from regen.imaging.store import sha256_file, thumbnail_path, write_atomically


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path):
    target = tmp_path / "a" / "b" / "out.jpg"
    write_atomically(target, b"one")
    write_atomically(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["out.jpg"]


def test_leftovers_of_a_killed_write_are_removed(tmp_path: Path):
    target = tmp_path / "out.jpg"
    (tmp_path / ".out.jpg.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".other.jpg.abc123.tmp").write_bytes(b"not ours")
    write_atomically(target, b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.jpg.abc123.tmp", "out.jpg"]


def _task(corpus: Path, store: Path, **kw) -> ThumbnailTask:
    values = dict(source_uri="photos/Landscape_3.jpg", source_sha256="", variant="h400.webp",
                  media_roots=(corpus,), image_store=store)
    values.update(kw)
    return ThumbnailTask(**values)


def test_render_writes_a_deterministic_path_and_then_hits_the_cache(corpus: Path, tmp_path: Path):
    source_sha = sha256_file(corpus / "photos" / "Landscape_3.jpg")
    first = run_thumbnail_task(_task(corpus, tmp_path, source_sha256=source_sha))
    assert first.path == thumbnail_path(tmp_path, source_sha, "h400.webp")
    assert not first.cache_hit
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256
    second = run_thumbnail_task(_task(corpus, tmp_path, source_sha256=source_sha))
    assert second.cache_hit and second.sha256 == first.sha256
    forced = run_thumbnail_task(_task(corpus, tmp_path, force=True))
    assert not forced.cache_hit and forced.sha256 == first.sha256, "same input, same bytes"


def test_a_truncated_output_is_rendered_again(corpus: Path, tmp_path: Path):
    first = run_thumbnail_task(_task(corpus, tmp_path))
    first.path.write_bytes(first.path.read_bytes()[:100])
    again = run_thumbnail_task(_task(corpus, tmp_path))
    assert not again.cache_hit and again.sha256 == first.sha256
    with Image.open(again.path) as im:
        im.load()


def test_changed_source_content_is_refused(corpus: Path, tmp_path: Path):
    with pytest.raises(SourceChanged, match="import the file again"):
        run_thumbnail_task(_task(corpus, tmp_path, source_sha256="0" * 64))


def test_an_output_check_stays_in_the_store_and_reads_no_more_than_recorded(tmp_path: Path):
    import hashlib
    import os

    from regen.imaging.store import output_problem

    store = tmp_path / "store"
    (store / "thumbnails").mkdir(parents=True)
    (store / "thumbnails" / "a.jpg").write_bytes(b"jpeg bytes")
    digest = hashlib.sha256(b"jpeg bytes").hexdigest()
    assert output_problem(store, "thumbnails/a.jpg", 10, digest) is None
    assert output_problem(store, "thumbnails/a.jpg", 11, digest) == "truncated"
    assert output_problem(store, "thumbnails/a.jpg", 4, digest) == "changed"  # longer than recorded: not read on
    assert output_problem(store, "thumbnails/gone.jpg", 10, digest) == "missing"
    # A forged completion naming a device, a path outside, or a link out of
    # the store: refused without reading (/dev/zero would never end).
    os.symlink("/dev/zero", store / "thumbnails" / "zero.jpg")
    for uri in ("/dev/zero", "../../../../dev/zero", "thumbnails/zero.jpg"):
        assert output_problem(store, uri, 10**12, digest) == "unreadable", uri
