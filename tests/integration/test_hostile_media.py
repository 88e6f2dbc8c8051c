"""Hostile sources through a real worker on a real broker: every one ends in
a typed ImageFailed, nothing from outside the media roots reaches the image
store, and afterwards the same worker process renders a normal import."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

import pytest
from PIL import Image

from regen.schemas.events import AssetImported, BoundaryChanged, ImageFailed, ImageGenerated
from regen.streams.codec import now_iso
from regen.streams.results import wait_for
from tests.helpers import WorkerProcess, publish_all, run, write_ts

SECRET_RED = (255, 0, 0)


def imported(asset_id: str, uri: str, media_type: str = "image", sha256: str = "0" * 64,
             root: Path | None = None) -> AssetImported:
    """An import of ``uri``; with ``root``, carrying the file's real sha256,
    so the render gets as far as decoding it."""
    if root is not None:
        sha256 = sha256_of(root / uri)
    return AssetImported(asset_id=asset_id, uri=uri, media_type=media_type, sha256=sha256, size_bytes=1,
                         imported_at=now_iso())


def boundary(annotation_id: str, source: str, end: int) -> BoundaryChanged:
    return BoundaryChanged(annotation_id=annotation_id, video_id="hostile", start_frame=0, end_frame=end,
                           revision=1, source=source)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outcomes(worker: WorkerProcess, ids: set[str], timeout: float = 90) -> dict:
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    return run(wait_for(settings, bootstrap, lambda c: c.target.id if c.target.id in ids else None, ids, timeout))


def looks_secret(path: Path) -> bool:
    with Image.open(path) as im:
        r, g, b = im.convert("RGB").getpixel((im.width // 2, im.height // 2))
    return r > 200 and g < 60 and b < 60


def assert_nothing_secret_in(store: Path) -> None:
    leaked = [p for p in store.rglob("*") if p.is_file() and not p.name.startswith(".") and looks_secret(p)]
    assert leaked == [], f"outside pixels reached the image store: {leaked}"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def renders_a_normal_photo(worker: WorkerProcess, corpus: Path, pid: int) -> None:
    photo = corpus / "photos" / "Landscape_3.jpg"
    asset = f"normal-{uuid.uuid4().hex[:6]}"
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    run(publish_all(settings, bootstrap, [imported(asset, "photos/Landscape_3.jpg", sha256=sha256_of(photo))]))
    done = outcomes(worker, {asset})[asset]
    assert isinstance(done, ImageGenerated), getattr(done, "error", done)
    assert worker.proc is not None and worker.proc.pid == pid and worker.proc.poll() is None, "the worker restarted"
    assert worker.get("/health")[0] == 200


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """(media root, outside folder): the outside holds a red 'secret' image and
    video segment an attacker wants regen to read and serve."""
    media, outside = tmp_path / "media", tmp_path / "outside"
    media.mkdir()
    outside.mkdir()
    Image.new("RGB", (320, 240), SECRET_RED).save(outside / "secret.png")
    write_ts(outside / "secret.ts", (320, 240), 12, value=0)
    Image.new("RGB", (320, 240), SECRET_RED).save(outside / "secret.jpg")
    return media, outside


def test_hostile_sources_fail_typed_and_the_same_worker_goes_on(start_worker, corpus, hostile, tmp_path):
    media, outside = hostile
    # Symlinks: a photo and one frame of a frame folder pointing outside.
    os.symlink(outside / "secret.jpg", media / "linked.jpg")
    frames = media / "frames"
    frames.mkdir()
    Image.new("RGB", (320, 240), (0, 0, 255)).save(frames / "frame_1.png")
    os.symlink(outside / "secret.png", frames / "frame_0.png")
    # A playlist naming a segment outside, by absolute and by relative path.
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{}\n#EXT-X-ENDLIST\n"
    (media / "abs.m3u8").write_text(playlist.format(outside / "secret.ts"))
    (media / "rel.mp4").write_text(playlist.format("../outside/secret.ts"))
    # A FIFO, a device, PostScript named .jpg, and a stream whose header
    # claims 64x64 while its later frames are 2400x2000 (over the 4 MP limit:
    # a composite decodes them; a thumbnail only needs the small first one).
    os.mkfifo(media / "pipe.jpg")
    (media / "page.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    small, large = write_ts(tmp_path / "a.ts", (64, 64), 4), write_ts(tmp_path / "b.ts", (2400, 2000), 3)
    (media / "growing.ts").write_bytes(small.read_bytes() + large.read_bytes())

    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}:/dev", REGEN_IDLE_DELAY="0.2",
                          REGEN_MAX_SOURCE_PIXELS="4000000", REGEN_PREGENERATE_VARIANTS="h400.jpg")
    assert worker.proc is not None
    pid = worker.proc.pid
    expected = {
        "t-linked": ("outside_media_roots", imported("t-linked", "linked.jpg")),
        "t-abs-playlist": (("unsupported_container", "corrupt"),
                           imported("t-abs-playlist", "abs.m3u8", "video", root=media)),
        "t-rel-playlist": (("unsupported_container", "corrupt"),
                           imported("t-rel-playlist", "rel.mp4", "video", root=media)),
        "t-fifo": ("not_a_file", imported("t-fifo", "pipe.jpg")),
        "t-device": ("not_a_file", imported("t-device", "/dev/zero", "video")),
        "t-dotdot": ("outside_media_roots", imported("t-dotdot", "../outside/secret.jpg")),
        "t-eps": ("corrupt", imported("t-eps", "page.jpg", root=media)),
        "c-linked-frame": ("outside_media_roots", boundary("c-linked-frame", "frames", 1)),
        "c-abs-playlist": (("unsupported_container", "corrupt"), boundary("c-abs-playlist", "abs.m3u8", 2)),
        "c-rel-playlist": (("unsupported_container", "corrupt"), boundary("c-rel-playlist", "rel.mp4", 2)),
        "c-fifo": ("not_a_file", boundary("c-fifo", "pipe.jpg", 0)),
        "c-growing": ("too_large", boundary("c-growing", "growing.ts", 6)),
    }
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    run(publish_all(settings, bootstrap, [event for _, event in expected.values()]))
    seen = outcomes(worker, set(expected))
    for target_id, (codes, _) in expected.items():
        outcome = seen[target_id]
        assert isinstance(outcome, ImageFailed), (target_id, outcome)
        codes = codes if isinstance(codes, tuple) else (codes,)
        assert outcome.error_code in codes and outcome.reason == "permanent", (target_id, outcome.error)
        assert outcome.attempts == 1, (target_id, outcome.error)
    assert_nothing_secret_in(Path(settings.image_store))
    renders_a_normal_photo(worker, corpus, pid)


def test_a_symlink_swapped_in_after_opening_is_never_read(start_worker, corpus, hostile):
    """The render process opens the photo, then the fault hook replaces its
    name with a symlink to the secret before a byte is read: the thumbnail
    is of the photo that was opened, and the next open refuses the link."""
    media, outside = hostile
    photo = media / "photo.jpg"
    shutil.copyfile(corpus / "photos" / "Landscape_1.jpg", photo)
    worker = start_worker(REGEN_MEDIA_ROOTS=str(media), REGEN_FAULT_SWAP_TO=str(outside / "secret.jpg"),
                          REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    run(publish_all(settings, bootstrap, [imported("swapped", "photo.jpg", sha256=sha256_of(photo))]))
    first = outcomes(worker, {"swapped"})["swapped"]
    assert isinstance(first, ImageGenerated), getattr(first, "error", first)
    assert photo.is_symlink() and photo.resolve() == outside / "secret.jpg", "the swap did not happen"
    output = Path(settings.image_store) / first.uri
    assert not looks_secret(output)
    assert first.sha256 == sha256_of(output)

    run(publish_all(settings, bootstrap, [imported("after-swap", "photo.jpg")]))
    second = outcomes(worker, {"after-swap"})["after-swap"]
    assert isinstance(second, ImageFailed) and second.error_code == "outside_media_roots", second
    assert_nothing_secret_in(Path(settings.image_store))


def test_memory_bombs_fail_with_resource_limit_and_the_worker_stays_flat(start_worker, corpus, tmp_path):
    """64 frames of a 49 MP image with the pixel budget lifted: the render
    process hits its memory cap and the job fails with resource_limit; a
    7000x7000 lossless WebP of a few hundred bytes either renders under the
    cap or fails the same way. The worker's own memory does not move."""
    media = tmp_path / "media"
    frames = media / "big-frames"
    frames.mkdir(parents=True)
    Image.new("RGB", (7000, 7000), (40, 90, 160)).save(frames / "frame_0.png", compress_level=1)
    for i in range(1, 64):
        os.link(frames / "frame_0.png", frames / f"frame_{i}.png")  # 64 names, one file on disk
    Image.new("RGB", (7000, 7000), (10, 20, 30)).save(media / "tiny.webp", lossless=True)
    assert (media / "tiny.webp").stat().st_size < 50_000

    worker = start_worker(REGEN_MEDIA_ROOTS=f"{corpus}:{media}", REGEN_IDLE_DELAY="0.2",
                          REGEN_RENDER_PROCESSES="1", REGEN_RENDER_MEMORY_MB="1024",
                          REGEN_COMPOSITE_PIXEL_BUDGET=str(10**12), REGEN_PREGENERATE_VARIANTS="h400.jpg")
    assert worker.proc is not None
    pid = worker.proc.pid
    before = rss_kib(pid)
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    run(publish_all(settings, bootstrap, [boundary("bomb-span", "big-frames", 63),
                                          imported("bomb-webp", "tiny.webp", sha256=sha256_of(media / "tiny.webp"))]))
    seen = outcomes(worker, {"bomb-span", "bomb-webp"}, timeout=120)
    span = seen["bomb-span"]
    assert isinstance(span, ImageFailed), span
    assert (span.error_code, span.reason, span.attempts) == ("resource_limit", "permanent", 1), span.error
    webp = seen["bomb-webp"]
    assert isinstance(webp, ImageGenerated) or webp.error_code == "resource_limit", webp
    renders_a_normal_photo(worker, corpus, pid)
    grown_mib = (rss_kib(pid) - before) / 1024
    assert grown_mib < 100, f"the worker process grew by {grown_mib:.0f} MiB"
