"""Cost of fits and formats: one process rendering presets of 8.6 MP photos.

Each figure is images per second of ``run_thumbnail_task`` (decode, fit,
encode, atomic write, forced: no cache hits) over the corpus photos upscaled
(bench/thumbnails.py), the median of ``--repeats`` runs, printed as a ratio
to ``h400.jpg`` measured in the same run.

    python -m bench.presets [--copies 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.thumbnails import make_photos
from regen.imaging.render import ThumbnailTask, run_thumbnail_task

# name -> preset definition ("" for a name that says what it is)
CASES = {
    "h400.jpg": "",
    "h400.webp": "",  # what WebP's encoder costs by itself
    "512x512.jpg": "",
    "card (512x512,cover,jpg,q80)": "512x512,cover,jpg,q80",
    "entropy (512x512,cover-entropy,jpg,q80)": "512x512,cover-entropy,jpg,q80",
    "contain (512x512,contain,webp,q80)": "512x512,contain,webp,q80",
    "avif (512x512,cover,avif,q60)": "512x512,cover,avif,q60",
}


def rate(photos: list[Path], store: Path, label: str, preset: str) -> float:
    variant = "p" if preset else label
    started = time.perf_counter()
    for photo in photos:
        run_thumbnail_task(ThumbnailTask(source_uri=photo.name, source_sha256="", variant=variant,
                                         media_roots=(photo.parent,), image_store=store, force=True,
                                         preset=preset))
    return len(photos) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp) / "photos", args.copies)
        store = Path(tmp) / "store"
        rate(photos[:2], store, "h400.jpg", "")  # warm-up: imports, first decodes
        rates: dict[str, list[float]] = {label: [] for label in CASES}
        for _ in range(args.repeats):  # interleaved, so a slow moment hurts every case alike
            for label, preset in CASES.items():
                rates[label].append(rate(photos, store, label, preset))
    baseline = statistics.median(rates["h400.jpg"])
    print(f"{len(photos)} photos of 8.6 MP, median of {args.repeats}")
    for label, values in rates.items():
        median = statistics.median(values)
        print(f"  {label:42s} {median:6.1f} images/s  {median / baseline:5.2f}x h400.jpg")


if __name__ == "__main__":
    main()
