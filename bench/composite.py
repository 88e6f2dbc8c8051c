"""Median composite: regen's exact uint8 median against np.median, and the
whole composite (decode + median + encode) against decoding alone.

On the same frames of a generated 1280x720 video, in one run:

- decode:     reading the span's frames with PyAV (seek once, decode forward);
- np.median:  ``np.median(stack, axis=0)`` on those frames;
- median:     ``imaging.composite.lower_median`` on the same stack;
- composite:  ``run_composite_task``: decode + median + PNG encode + atomic write.

Medians of ``--repeats`` runs; peak memory of the median step by tracemalloc.

    python -m bench.composite [--frames 61] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from regen.cli.samples import write_video
from regen.imaging.composite import lower_median
from regen.imaging.frames import read_frames
from regen.imaging.limits import Limits
from regen.imaging.render import CompositeTask, run_composite_task


def timed(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=61)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="regen-bench-video-"))
    clip = write_video(folder / "clip.mp4", frames=args.frames + 20, size=(1280, 720))
    wanted = list(range(10, 10 + args.frames))
    frames = read_frames(clip, wanted, None, Limits())
    stack = np.stack(frames)
    assert np.array_equal(lower_median(stack), np.median(stack, axis=0).astype(np.uint8)) or args.frames % 2 == 0

    decode = timed(lambda: read_frames(clip, wanted, None, Limits()), args.repeats)
    numpy_median = timed(lambda: np.median(stack, axis=0), args.repeats)
    ours = timed(lambda: lower_median(stack), args.repeats)
    store = folder / "store"
    whole = timed(lambda: run_composite_task(CompositeTask("clip.mp4", wanted[0], wanted[-1], None, "full.png",
                                                           (folder,), store, max_frames=args.frames, force=True)),
                  args.repeats)
    stack_mib = stack.nbytes / 2**20
    print(f"{args.frames} frames of 1280x720 (stack {stack_mib:.0f} MiB), median of {args.repeats} runs")
    print(f"decode frames alone       {decode * 1000:8.1f} ms")
    numpy_peak = peak_mib(lambda: np.median(stack, axis=0))
    print(f"np.median(stack, axis=0)  {numpy_median * 1000:8.1f} ms   peak +{numpy_peak:.0f} MiB")
    print(f"lower_median(stack)       {ours * 1000:8.1f} ms   peak +{peak_mib(lambda: lower_median(stack)):.0f} MiB   "
          f"{numpy_median / ours:.2f} x faster than np.median")
    print(f"whole composite           {whole * 1000:8.1f} ms   decoding is {decode / whole:.0%} of it, "
          f"the median {ours / whole:.0%}")


if __name__ == "__main__":
    main()
