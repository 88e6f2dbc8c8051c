"""Thumbnails of real photos in every EXIF orientation, and of broken files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regen.imaging.errors import ImagingError, SourceTooLarge
from regen.imaging.limits import Limits
from regen.imaging.thumbnails import render_thumbnail, thumbnail_image
from regen.imaging.variants import parse_variant
from tests.helpers import BAD_OUTCOMES

H400 = parse_variant("h400.jpg")
LIMITS = Limits()


def _pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("kind", ["Landscape", "Portrait"])
@pytest.mark.parametrize("orientation", range(0, 9))
def test_every_orientation_matches_the_upright_file(corpus: Path, kind: str, orientation: int):
    reference = thumbnail_image(corpus / "photos" / f"{kind}_1.jpg", H400, LIMITS)
    oriented = thumbnail_image(corpus / "photos" / f"{kind}_{orientation}.jpg", H400, LIMITS)
    assert oriented.size == reference.size
    assert oriented.height == 400
    difference = np.abs(_pixels(oriented) - _pixels(reference)).mean()
    # Same picture, different JPEG decode paths: a few levels of noise. A
    # mirrored or rotated result differs by tens of levels.
    assert difference < 8, f"{kind}_{orientation}: mean abs difference {difference:.1f}"


@pytest.mark.parametrize("variant_name", ["h200.jpg", "h123.jpg", "w333.jpg"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_gets_the_exact_size_of_its_variant(corpus: Path, variant_name: str, orientation: int):
    variant = parse_variant(variant_name)
    with Image.open(corpus / "photos" / "Portrait_1.jpg") as upright:
        expected = variant.target_size(*upright.size)
    assert thumbnail_image(corpus / "photos" / f"Portrait_{orientation}.jpg", variant, LIMITS).size == expected


def test_a_wrongly_oriented_thumbnail_would_be_caught(corpus: Path):
    """The comparison above can fail: a mirrored thumbnail is far off."""
    reference = thumbnail_image(corpus / "photos" / "Landscape_1.jpg", H400, LIMITS)
    mirrored = reference.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert np.abs(_pixels(mirrored) - _pixels(reference)).mean() > 20


def test_portrait_is_taller_than_wide(corpus: Path):
    im = thumbnail_image(corpus / "photos" / "Portrait_6.jpg", H400, LIMITS)
    assert im.height == 400 and im.width < im.height


@pytest.mark.parametrize("variant_name, fmt", [("h400.jpg", "JPEG"), ("h400.webp", "WEBP"), ("h200.png", "PNG")])
def test_output_format_size_and_no_metadata(corpus: Path, variant_name: str, fmt: str):
    variant = parse_variant(variant_name)
    out = render_thumbnail(corpus / "photos" / "Landscape_6.jpg", variant, LIMITS)
    with Image.open(io.BytesIO(out.data)) as im:
        assert im.format == fmt
        assert im.height == variant.height and (out.width, out.height) == im.size
        assert len(im.getexif()) == 0, "EXIF must be stripped"
        assert "xmp" not in im.info and "comment" not in im.info


def test_draft_decoding_is_used_for_jpeg(corpus: Path, monkeypatch):
    """The fast path: JPEG DCT scaling decodes at a fraction of full size."""
    requested = []
    from PIL import JpegImagePlugin

    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        requested.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    thumbnail_image(corpus / "photos" / "Landscape_1.jpg", H400, LIMITS)
    assert requested, "thumbnail() did not ask for a draft decode"
    _, decoded_size = requested[-1]
    assert decoded_size == (900, 600), f"expected a 1/2-scale DCT decode of 1800x1200, got {decoded_size}"


def test_no_upscaling(corpus: Path):
    out = render_thumbnail(corpus / "bad" / "hopper.jpg", H400, LIMITS)
    assert (out.width, out.height) == (128, 128)


@pytest.mark.parametrize("name", sorted(BAD_OUTCOMES))
def test_bad_corpus_gives_the_documented_outcome(corpus: Path, name: str):
    expected = BAD_OUTCOMES[name]
    path = corpus / "bad" / name
    if isinstance(expected, type):
        with pytest.raises(expected) as info:
            render_thumbnail(path, H400, LIMITS)
        assert info.value.permanent
        assert name in str(info.value)
        return
    out = render_thumbnail(path, H400, LIMITS)
    with Image.open(io.BytesIO(out.data)) as im:
        im.load()
        if isinstance(expected, tuple):
            assert im.size == expected


def test_pixel_limit_is_enforced(corpus: Path):
    with pytest.raises(SourceTooLarge, match="MP limit"):
        render_thumbnail(corpus / "photos" / "Landscape_1.jpg", H400, Limits(max_pixels=1_000_000))


def test_file_size_limit_is_enforced(corpus: Path):
    with pytest.raises(SourceTooLarge, match="byte limit"):
        render_thumbnail(corpus / "photos" / "Landscape_1.jpg", H400, Limits(max_bytes=1000))


def test_video_first_frame(tmp_path: Path):
    from regen.cli.samples import write_video

    clip = write_video(tmp_path / "clip.mp4", frames=6, size=(320, 240))
    out = render_thumbnail(clip, parse_variant("h200.jpg"), LIMITS)
    assert (out.width, out.height) == (267, 200)


def test_a_file_that_is_not_a_video_fails_as_corrupt(tmp_path: Path):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00" * 2048)
    with pytest.raises(ImagingError) as info:
        render_thumbnail(fake, H400, LIMITS)
    assert info.value.permanent


def test_heif_is_accepted(tmp_path: Path, corpus: Path):
    pillow_heif = pytest.importorskip("pillow_heif")  # a declared dependency: present in every install
    source = tmp_path / "photo.heic"
    with Image.open(corpus / "photos" / "Landscape_1.jpg") as im:
        pillow_heif.from_pillow(im.convert("RGB")).save(source, quality=80)
    out = render_thumbnail(source, H400, LIMITS)
    assert out.height == 400
