"""Cost of the store's lifecycle: walking the store per kind, and telling
what a completion changed in the files a target holds.

1. The store walk behind ``regen_store_files``/``regen_store_bytes`` and
   ``regen gc`` (imaging/store_walk.py: scandir, no symlink followed, per
   kind), in files per second, as a ratio to the floor: ``os.walk`` with
   one ``lstat`` per file over the same tree.
2. ``reference_changes`` (the diff intake and the projector compute for
   every change of a target's state), in folds per second, as a ratio to
   the fold it follows: ``Thumbnail.completed`` of an ImageGenerated.

Medians of ``--repeats`` runs, interleaved.

    python -m bench.store_lifecycle [--files 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from regen.imaging.store_walk import usage
from regen.kinds import KINDS
from regen.projections import output_refs
from regen.schemas.events import AssetImported, ImageGenerated, Target
from regen.settings import Settings

AT = "2026-11-21T10:00:00.000Z"


def make_store(root: Path, files: int) -> None:
    folders = ("thumbnails", "composites", "overlays", "generated")
    for i in range(files):
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        folder = root / folders[i % len(folders)] / digest[:2] / digest
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "h400.jpg").write_bytes(b"x" * (i % 500))


def floor_walk(root: Path) -> int:
    count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            os.lstat(os.path.join(folder, name))
            count += 1
    return count


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def completions(n: int):
    """(before, event) pairs: an asset whose thumbnail is rendered anew."""
    kind, settings = KINDS["thumbnail"], Settings()
    pairs = []
    for i in range(n):
        sha = hashlib.sha256(str(i).encode()).hexdigest()
        state = kind.fold_source(None, AssetImported(f"a{i}", "x.jpg", "image", sha, 10, AT), AT)
        done = ImageGenerated(Target("thumbnail", f"a{i}"), "h400.jpg", 1, f"thumbnail:a{i}:h400.jpg:r1",
                              f"thumbnails/{sha[:2]}/{sha}/h400.jpg", sha, 10, 10, 99, 1.0, 1, False, AT)
        pairs.append((state, done))
    return kind, settings, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folders = output_refs.kind_folders()
    kind, settings, pairs = completions(20000)
    folded = [(before, kind.completed(before, event)) for before, event in pairs]
    walk_s: list[float] = []
    floor_s: list[float] = []
    fold_s: list[float] = []
    diff_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        make_store(store, args.files)
        floor_walk(store)  # warm the page cache for both
        for _ in range(args.repeats):
            floor_s.append(timed(floor_walk, store))
            walk_s.append(timed(usage, store, folders))
            fold_s.append(timed(lambda: [kind.completed(b, e) for b, e in pairs]))
            diff_s.append(timed(lambda: [output_refs.reference_changes(kind, "a", b, a, settings, 1.0)
                                         for b, a in folded]))
    floor, walk = statistics.median(floor_s), statistics.median(walk_s)
    fold, diff = statistics.median(fold_s), statistics.median(diff_s)
    print(f"median of {args.repeats}")
    print(f"  store walk per kind   {args.files / walk:10.0f} files/s  {floor / walk:5.2f}x os.walk+lstat "
          f"({args.files / floor:.0f} files/s)")
    print(f"  reference_changes     {len(pairs) / diff:10.0f} folds/s  {fold / diff:5.2f}x Thumbnail.completed "
          f"({len(pairs) / fold:.0f} folds/s)")


if __name__ == "__main__":
    main()
