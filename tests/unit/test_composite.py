"""The median composite: exact against np.sort, from videos and frame folders alike."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from regen.cli.samples import write_video
from regen.imaging.composite import SpanOutOfRange, composite, lower_median, sample_frames
from regen.imaging.errors import CorruptImage, UnsupportedMedia
from regen.imaging.frames import read_frames
from regen.imaging.limits import Limits
from regen.imaging.render import CompositeTask, run_composite_task


def reference(stack: np.ndarray) -> np.ndarray:
    return np.sort(stack, axis=0)[(stack.shape[0] - 1) // 2]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 8, 61, 64, 300])
def test_lower_median_equals_the_sorted_reference(count):
    rng = np.random.default_rng(count)
    stack = rng.integers(0, 256, (count, 23, 31, 3), dtype=np.uint8)
    assert np.array_equal(lower_median(stack), reference(stack))


def test_even_count_takes_the_lower_middle_value():
    stack = np.array([[10], [20], [30], [40]], dtype=np.uint8)
    assert lower_median(stack).tolist() == [20]


def test_extremes_and_ties():
    stack = np.array([[0, 255, 7], [255, 255, 7], [0, 0, 7]], dtype=np.uint8)
    assert lower_median(stack).tolist() == [0, 255, 7]


def test_sampling_keeps_both_ends_and_the_cap():
    assert sample_frames(5, 9, 64) == [5, 6, 7, 8, 9]
    sampled = sample_frames(0, 999, 64)
    assert len(sampled) == 64 and sampled[0] == 0 and sampled[-1] == 999
    gaps = np.diff(sampled)
    assert gaps.max() - gaps.min() <= 1, "evenly spaced"
    with pytest.raises(SpanOutOfRange):
        sample_frames(10, 5, 64)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=30, size=(160, 96))


@pytest.fixture(scope="module")
def decoded(clip) -> list[np.ndarray]:
    with av.open(str(clip)) as container:
        return [np.asarray(f.to_image()) for f in container.decode(video=0)]


@pytest.mark.parametrize("wanted", [[0, 1, 2], [7, 8, 9, 10], [13, 29], [25]])
def test_video_frames_are_the_decoded_frames_with_one_seek(clip, decoded, wanted):
    frames = read_frames(clip, wanted, None, Limits())
    for number, frame in zip(wanted, frames, strict=True):
        assert np.array_equal(frame, decoded[number]), f"frame {number}"


def test_folder_and_video_give_the_same_composite(clip, decoded, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for number, frame in enumerate(decoded):  # frame_2 must sort before frame_10
        Image.fromarray(frame).save(folder / f"frame_{number}.png")
    wanted = sample_frames(3, 24, 8)
    crop = (10, 20, 100, 50)
    from_video = composite(read_frames(clip, wanted, crop, Limits()), wanted, (3, 24))
    from_folder = composite(read_frames(folder, wanted, crop, Limits()), wanted, (3, 24))
    assert from_video.image.size == (100, 50)
    assert np.array_equal(np.asarray(from_video.image), np.asarray(from_folder.image))
    expected = reference(np.stack([decoded[n][20:70, 10:110] for n in wanted]))
    assert np.array_equal(np.asarray(from_folder.image), expected)
    assert from_video.sampled and from_video.frames == tuple(wanted)


def test_the_moving_object_is_gone_and_the_caption_stays(tmp_path):
    clip = write_video(tmp_path / "ball.mp4", frames=30, size=(320, 240))  # ball rows 100-220, caption below 170
    frames = read_frames(clip, list(range(30)), None, Limits())
    median = np.asarray(composite(frames, list(range(30)), (0, 29)).image).astype(int)
    background = frames[0][20, 20].astype(int)
    assert np.abs(frames[5][110:160].astype(int) - background).max() > 100, "a frame does show the ball"
    assert np.abs(median[110:160] - background).mean() < 6, "the median has no ball"
    assert median[180:230].max() > 200, "the white caption text survives"


def test_span_past_the_end_and_bad_crop_fail_permanently(clip):
    with pytest.raises(SpanOutOfRange) as past:
        read_frames(clip, [28, 35], None, Limits())
    assert past.value.permanent
    with pytest.raises(SpanOutOfRange, match="does not fit"):
        read_frames(clip, [0], (100, 50, 100, 100), Limits())


def test_missing_or_corrupt_sources(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01" * 1000)
    with pytest.raises((CorruptImage, UnsupportedMedia)):
        read_frames(broken, [0], None, Limits())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnsupportedMedia):
        read_frames(empty, [0], None, Limits())


def test_composite_task_is_deterministic_and_cached(clip, tmp_path):
    task = CompositeTask("clip.mp4", 2, 20, None, "full.png", (clip.parent,), tmp_path / "store", max_frames=8)
    first = run_composite_task(task)
    again = run_composite_task(task)
    assert not first.cache_hit and again.cache_hit and again.path == first.path and again.sha256 == first.sha256
    assert len(first.frames) == 8 and first.sampled
