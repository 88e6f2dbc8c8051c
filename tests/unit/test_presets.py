"""Presets and WxH variants: parsing, each fit's size and crop (pixel checks),
quality, AVIF, store paths that follow a preset's definition, and a request
never answered by a file of an earlier definition."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regen.agents.intake import on_image_requested
from regen.imaging import variants as variants_module
from regen.imaging.errors import InvalidVariant
from regen.imaging.fit import entropy_offset, fit_image
from regen.imaging.limits import Limits
from regen.imaging.render import CompositeTask, ThumbnailTask, run_composite_task, run_thumbnail_task
from regen.imaging.thumbnails import encode, render_thumbnail, thumbnail_image
from regen.imaging.variants import from_another_definition, parse_preset, parse_presets, parse_variant
from regen.schemas.events import ImageGenerated
from regen.settings import Settings
from regen.streams.exceptions import ConfigError
from tests.unit.test_agent_decisions import THUMBNAIL, import_example, render_for_real, request, run, sent
from tests.unit.test_agent_decisions import ctx as ctx  # noqa: F401  # the fixture, used by name

LIMITS = Limits()
RED, GREEN, BLUE = (220, 30, 30), (30, 200, 30), (30, 30, 220)


def bands(size: tuple[int, int], colours=(RED, GREEN, BLUE)) -> Image.Image:
    """Three equal bands along the long axis: left/top red, middle green, right/bottom blue."""
    w, h = size
    a = np.zeros((h, w, 3), dtype=np.uint8)
    for i, colour in enumerate(colours):
        if w >= h:
            a[:, i * w // 3:(i + 1) * w // 3] = colour
        else:
            a[i * h // 3:(i + 1) * h // 3, :] = colour
    return Image.fromarray(a, "RGB")


def near(pixel, colour, tolerance=12) -> bool:
    return all(abs(int(p) - c) <= tolerance for p, c in zip(pixel, colour, strict=False))


# --- parsing -----------------------------------------------------------------


def test_a_wxh_name_is_exactly_that_size_covered_about_the_centre():
    v = parse_variant("512x512.jpg")
    assert (v.width, v.height, v.fit, v.format, v.quality) == (512, 512, "cover", "JPEG", 82)
    assert v.file_name == "512x512.jpg" and v.target_size(4000, 3000) == (512, 512)


@pytest.mark.parametrize("spec, expected", [
    ("512x512,cover,jpg,q80", (512, 512, "cover", "JPEG", 80, "jpg")),
    ("1600x900,cover-entropy,avif,q60", (1600, 900, "cover-entropy", "AVIF", 60, "avif")),
    ("300x200,contain,png", (300, 200, "contain", "PNG", 82, "png")),
    ("300x200,webp,inside", (300, 200, "inside", "WEBP", 82, "webp")),
    ("300x200,jpeg", (300, 200, "cover", "JPEG", 82, "jpeg")),  # fit defaults as for a name
    ("h400,webp,q50", (None, 400, "inside", "WEBP", 50, "webp")),
    ("full,avif", (None, None, "inside", "AVIF", 60, "avif")),  # AVIF's own default quality
    (" 64X48 , Q7 , JPG ", (64, 48, "cover", "JPEG", 7, "jpg")),
])
def test_preset_definitions(spec, expected):
    v = parse_preset("p", spec)
    assert (v.width, v.height, v.fit, v.format, v.quality, v.extension) == expected
    assert v.file_name.startswith("p.") and v.file_name.endswith(f".{expected[-1]}")


def test_a_presets_file_name_follows_its_meaning_not_its_spelling():
    card = parse_preset("card", "512x512,cover,jpg,q80")
    assert parse_preset("card", " 512x512 , jpg, q80,COVER").file_name == card.file_name
    assert parse_preset("card", "512x512,jpg,q80").file_name == card.file_name  # cover is the default
    changed = {parse_preset("card", spec).file_name for spec in (
        "512x512,cover,jpg,q70", "512x512,cover-entropy,jpg,q80", "512x511,cover,jpg,q80", "512x512,contain,jpg,q80")}
    assert card.file_name not in changed and len(changed) == 4
    assert parse_preset("other", "512x512,cover,jpg,q80").file_name != card.file_name


@pytest.mark.parametrize("spec, message", [
    ("512x512,cover", r"names no format; add one of avif, jpeg, jpg, png, webp, e\.g\. card=512x512,cover,jpg"),
    ("cover,512x512,jpg", r"starts with 'cover', not a size; write card=<W>x<H>"),
    ("512x512,stretch,jpg", r"'stretch' is not a fit \(cover, cover-entropy, contain, inside\)"),
    ("512x512,jpg,q0", "quality q0 is out of range; write q1 to q100"),
    ("512x512,jpg,q101", "quality q101 is out of range"),
    ("512x512,png,q80", "png is lossless, q80 would change nothing; remove it"),
    ("h400,cover,jpg", r"fit cover needs both sides; write <W>x<H>,cover"),
    ("512x512,jpg,webp", r"two formats \(jpg, webp\); keep one"),
    ("512x512,cover,contain,jpg", r"two fits"),
    ("9000x10,jpg", "9000 px is over the 8192 px limit"),
    ("8000x8000,jpg", "64,000,000 pixels, over the 40,000,000 limit"),
    ("0x10,jpg", "not a size"),
])
def test_bad_preset_definitions_say_what_to_write(spec, message):
    with pytest.raises(InvalidVariant, match=message):
        parse_preset("card", spec)


@pytest.mark.parametrize("text, message", [
    ("card", r"'card' is not <name>=<definition>; write e\.g\. card=512x512,cover,jpg,q80"),
    ("card=", "is not <name>=<definition>"),
    ("Card=512x512,jpg", "must be 1-40 of a-z"),
    ("h400.jpg=512x512,jpg", "no dot"),
    ("card=512x512,jpg;card=64x64,jpg", "'card' is defined twice"),
])
def test_bad_preset_lists(text, message):
    with pytest.raises(InvalidVariant, match=message):
        parse_presets(text)


@pytest.mark.parametrize("name", ["0x10.jpg", "10x0.jpg", "10x.jpg", "x10.jpg", "10x10", "10x10.gif", "9000x9.jpg",
                                  "card"])
def test_invalid_wxh_names(name):
    with pytest.raises(InvalidVariant):
        parse_variant(name)


def test_presets_in_settings_are_variants_everywhere():
    s = Settings.from_env({
        "REGEN_PRESETS": "card=512x512,cover,jpg,q80; hero=1600x900,cover-entropy,avif,q60",
        "REGEN_VARIANTS": "h400.jpg,card,hero,64x64.webp",
        "REGEN_PREGENERATE_VARIANTS": "card,64x64.webp",
        "REGEN_COMPOSITE_VARIANT": "hero",
    })
    assert s.presets == ("card=512x512,cover,jpg,q80", "hero=1600x900,cover-entropy,avif,q60")
    assert s.preset("card") == "512x512,cover,jpg,q80" and s.preset("h400.jpg") == ""
    assert s.variant("hero").format == "AVIF" and s.variant("64x64.webp").fit == "cover"
    assert ("presets", "REGEN_PRESETS", "card=512x512,cover,jpg,q80;hero=1600x900,cover-entropy,avif,q60") \
        in s.describe()


@pytest.mark.parametrize("env, message", [
    ({"REGEN_PRESETS": "card=512x512,cover,jpg,q80"},
     "REGEN_PRESETS defines card, which REGEN_VARIANTS does not list, so nobody could ask for it: add it "
     r"\(REGEN_VARIANTS=h400\.jpg,h400\.webp,h200\.jpg,full\.png,card\)"),
    ({"REGEN_PRESETS": "card=512x512,q80", "REGEN_VARIANTS": "h400.jpg,card",
      "REGEN_PREGENERATE_VARIANTS": "h400.jpg", "REGEN_COMPOSITE_VARIANT": "h400.jpg"},
     "REGEN_PRESETS: preset card='512x512,q80': names no format"),
    ({"REGEN_VARIANTS": "h400.jpg,card", "REGEN_PREGENERATE_VARIANTS": "h400.jpg",
      "REGEN_COMPOSITE_VARIANT": "h400.jpg"}, "REGEN_VARIANTS: .*nor a preset defined in REGEN_PRESETS"),
    ({"REGEN_PRESETS": "card=512x512,jpg", "REGEN_VARIANTS": "h400.jpg,card", "REGEN_PREGENERATE_VARIANTS": "hero",
      "REGEN_COMPOSITE_VARIANT": "card"}, "REGEN_PREGENERATE_VARIANTS names hero"),
])
def test_bad_preset_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_pillow_without_avif_is_a_config_error(monkeypatch):
    monkeypatch.setattr(variants_module, "avif_available", lambda: False)
    with pytest.raises(ConfigError, match=r"cannot write AVIF \(PIL\.features\.check\('avif'\) is False\)"):
        Settings.from_env({"REGEN_VARIANTS": "h400.jpg,h400.avif", "REGEN_PREGENERATE_VARIANTS": "h400.jpg",
                           "REGEN_COMPOSITE_VARIANT": "h400.jpg"})


# --- fits --------------------------------------------------------------------


def test_cover_fills_the_box_and_crops_about_the_centre():
    out = fit_image(bands((300, 100)), parse_variant("100x100.png"))
    assert out.size == (100, 100)
    assert all(near(out.getpixel(p), GREEN) for p in [(2, 2), (50, 50), (97, 97), (2, 97)])
    tall = fit_image(bands((100, 300)), parse_variant("100x100.png"))
    assert tall.size == (100, 100) and near(tall.getpixel((50, 2)), GREEN) and near(tall.getpixel((50, 97)), GREEN)
    # Wider than the source's aspect: the whole width, the middle rows.
    wide = fit_image(bands((100, 300)), parse_variant("200x100.png"))
    assert wide.size == (200, 100) and near(wide.getpixel((100, 50)), GREEN)


def test_cover_of_a_small_source_scales_it_up_to_the_box():
    out = fit_image(bands((30, 20)), parse_variant("300x300.png"))
    assert out.size == (300, 300) and near(out.getpixel((150, 150)), GREEN)


def detail_at(size: tuple[int, int], where: str) -> Image.Image:
    """Flat grey with random noise in one edge's quarter."""
    w, h = size
    a = np.full((h, w), 128, dtype=np.uint8)
    noise = np.random.default_rng(7).integers(0, 256, size=(h, w), dtype=np.uint8)
    region = {"right": np.s_[:, 3 * w // 4:], "left": np.s_[:, :w // 4],
              "bottom": np.s_[3 * h // 4:, :], "top": np.s_[:h // 4, :]}[where]
    a[region] = noise[region]
    return Image.fromarray(a, "L").convert("RGB")


@pytest.mark.parametrize("size, where, offset", [((800, 200), "right", 1.0), ((800, 200), "left", 0.0),
                                                 ((200, 800), "bottom", 1.0), ((200, 800), "top", 0.0)])
def test_cover_entropy_crops_where_the_detail_is(size, where, offset):
    image = detail_at(size, where)
    assert entropy_offset(image, (200, 200)) == offset
    out = np.asarray(fit_image(image, parse_preset("p", "200x200,cover-entropy,png")).convert("L"), dtype=float)
    centred = np.asarray(fit_image(image, parse_preset("p", "200x200,cover,png")).convert("L"), dtype=float)
    assert out.shape == (200, 200)
    assert out.std() > 40 and centred.std() < 1, "the entropy crop holds the noise, the centred one is flat"
    # The whole detailed quarter (200 px of 800) lies inside the crop.
    edge = out[:, -3:] if where == "right" else out[:, :3] if where == "left" else \
        out[-3:, :] if where == "bottom" else out[:3, :]
    assert edge.std() > 40


def test_cover_entropy_of_a_plain_image_is_the_centred_crop():
    plain = bands((300, 100), colours=(GREEN, GREEN, GREEN))
    assert entropy_offset(plain, (100, 100)) == 0.5
    assert entropy_offset(bands((300, 300)), (100, 100)) == 0.5  # same aspect: nothing is cut


def test_contain_pads_to_the_box_white_for_jpeg_transparent_otherwise():
    red = Image.new("RGB", (300, 100), RED)
    jpg = fit_image(red, parse_preset("p", "200x200,contain,jpg"))
    assert jpg.size == (200, 200) and jpg.mode == "RGB"
    assert near(jpg.getpixel((100, 100)), RED) and jpg.getpixel((100, 5)) == (255, 255, 255)
    assert jpg.getpixel((100, 195)) == (255, 255, 255)
    png = fit_image(red, parse_preset("p", "200x200,contain,png"))
    assert png.size == (200, 200) and png.mode == "RGBA"
    assert png.getpixel((100, 5))[3] == 0 and png.getpixel((100, 100)) == (*RED, 255)
    # The image is 200x67 centred: rows 66..132.
    alpha = np.asarray(png.getchannel("A"))
    assert alpha[:, 100].nonzero()[0].min() in (66, 67) and alpha[:, 100].nonzero()[0].max() in (132, 133)
    small = fit_image(Image.new("RGB", (20, 10), RED), parse_preset("p", "200x200,contain,webp"))
    assert small.size == (200, 200) and near(small.getpixel((2, 100)), RED)  # scaled up to the width


def test_inside_fits_within_the_box_and_never_upscales():
    v = parse_preset("p", "200x200,inside,jpg")
    assert fit_image(bands((300, 100)), v).size == (200, 67)
    assert fit_image(bands((100, 300)), v).size == (67, 200)
    assert fit_image(bands((50, 40)), v).size == (50, 40)
    assert v.target_size(300, 100) == v.transposed().target_size(100, 300)[::-1]


@pytest.mark.parametrize("spec", ["320x200,cover,jpg", "320x200,cover-entropy,jpg", "320x200,contain,jpg",
                                  "320x200,inside,jpg"])
@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_fits_of_rotated_photos_are_upright_and_sized(corpus: Path, spec: str, orientation: int):
    """Through the JPEG draft path, a photo stored on its side (EXIF 6, 8)
    fitted to a box gives what its upright twin gives."""
    v = parse_preset("p", spec)
    reference = thumbnail_image(corpus / "photos" / "Landscape_1.jpg", v, LIMITS)
    rotated = thumbnail_image(corpus / "photos" / f"Landscape_{orientation}.jpg", v, LIMITS)
    assert rotated.size == reference.size
    assert rotated.size == ((320, 200) if v.exact else v.target_size(*Image.open(
        corpus / "photos" / "Landscape_1.jpg").size))
    difference = np.abs(np.asarray(rotated.convert("RGB"), dtype=int) - np.asarray(reference.convert("RGB"),
                                                                                     dtype=int)).mean()
    assert difference < 8


# --- encoding ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpg", "webp", "avif"])
def test_quality_changes_the_bytes(corpus: Path, fmt: str):
    photo = corpus / "photos" / "Landscape_1.jpg"
    high = render_thumbnail(photo, parse_preset("p", f"256x256,cover,{fmt},q90"), LIMITS)
    low = render_thumbnail(photo, parse_preset("p", f"256x256,cover,{fmt},q20"), LIMITS)
    assert (high.width, high.height) == (low.width, low.height) == (256, 256)
    assert len(low.data) < len(high.data) * 0.8


def test_avif_round_trip(corpus: Path):
    image = bands((300, 100))
    out = encode(fit_image(image, parse_variant("90x90.avif")), parse_variant("90x90.avif"))
    with Image.open(io.BytesIO(out.data)) as back:
        assert back.format == "AVIF" and back.size == (90, 90)
        assert near(back.convert("RGB").getpixel((45, 45)), GREEN, tolerance=20)
    photo = render_thumbnail(corpus / "photos" / "Portrait_6.jpg", parse_preset("p", "h200,avif,q50"), LIMITS)
    with Image.open(io.BytesIO(photo.data)) as back:
        assert back.format == "AVIF" and back.height == 200 and back.height > back.width  # upright portrait
        assert not back.getexif(), "no metadata reaches the output"


def test_contain_with_transparency_survives_encoding_as_avif_and_webp():
    v = parse_preset("p", "64x64,contain,webp")
    for variant in (v, replace(v, format="AVIF", ext="avif")):
        out = encode(fit_image(Image.new("RGB", (64, 16), RED), variant), variant)
        with Image.open(io.BytesIO(out.data)) as back:
            assert back.mode == "RGBA" and back.getpixel((32, 2))[3] == 0 and back.getpixel((32, 32))[3] == 255


# --- store paths and requests ------------------------------------------------


def test_store_path_follows_the_preset_definition(corpus: Path, tmp_path: Path):
    photo = corpus / "photos" / "Landscape_1.jpg"

    def render(variant: str, preset: str = ""):
        return run_thumbnail_task(ThumbnailTask(source_uri=photo.name, source_sha256="", variant=variant,
                                                media_roots=(photo.parent,), image_store=tmp_path, preset=preset))

    q80, q80_again, q70 = (render("card", "512x512,cover,jpg,q80"), render("card", "512x512,cover,jpg,q80"),
                           render("card", "512x512,cover,jpg,q70"))
    assert q80.path == q80_again.path and q80_again.cache_hit and q80.path.suffix == ".jpg"
    assert q70.path != q80.path and not q70.cache_hit and q70.path.parent == q80.path.parent
    assert q70.path.name == parse_preset("card", "512x512,cover,jpg,q70").file_name
    assert q80.sha256 != q70.sha256 and (q70.width, q70.height) == (512, 512)
    assert render("h400.jpg").path.name == "h400.jpg" and render("512x512.jpg").path.name == "512x512.jpg"
    with Image.open(q70.path) as im:
        assert im.format == "JPEG" and im.size == (512, 512)


def test_a_composite_is_fitted_and_stored_by_its_preset(tmp_path: Path):
    folder = tmp_path / "media" / "frames"
    folder.mkdir(parents=True)
    for number in range(3):
        bands((90, 30)).save(folder / f"frame_{number}.png")
    task = CompositeTask(source_uri="frames", start_frame=0, end_frame=2, crop=None, variant="square",
                         media_roots=(tmp_path / "media",), image_store=tmp_path / "store",
                         preset="30x30,cover,png")
    out = run_composite_task(task)
    assert out.path.parent.parent.parent == tmp_path / "store" / "composites"
    assert out.path.name == parse_preset("square", "30x30,cover,png").file_name
    with Image.open(out.path) as im:
        assert im.size == (30, 30) and near(im.convert("RGB").getpixel((15, 15)), GREEN)


def test_an_output_of_an_earlier_definition_is_recognised():
    card = parse_preset("card", "512x512,cover,jpg,q80")
    earlier = parse_preset("card", "512x512,cover,jpg,q70")
    assert from_another_definition(f"thumbnails/ab/abc/{earlier.file_name}", card)
    assert not from_another_definition(f"thumbnails/ab/abc/{card.file_name}", card)
    assert not from_another_definition("thumbnails/ab/abc/cardigan.jpg", card)
    assert not from_another_definition("thumbnails/ab/abc/h400.jpg", parse_variant("h400.jpg"))


def test_a_request_after_a_preset_changed_renders_again(ctx):  # noqa: F811  # the fixture imported above
    ctx.settings = ctx.settings.with_overrides(presets=("card=64x64,cover,jpg,q80",),
                                               variants=(*ctx.settings.variants, "card"),
                                               pregenerate_variants=("card",))
    import_example(ctx)
    [job] = sent(ctx, "render.background")
    assert job.variant == "card"
    done = render_for_real(ctx, job)
    assert done.uri.endswith(ctx.settings.variant("card").file_name) and (done.width, done.height) == (64, 64)
    ctx.sent.clear()
    run(on_image_requested(ctx, request("a1", variant="card", rid="same")))
    [answer] = sent(ctx, "images.results")
    assert isinstance(answer, ImageGenerated) and answer.cache_hit and answer.uri == done.uri
    # Redefined (q70): the intact q80 file must not answer; a forced render does.
    ctx.settings = ctx.settings.with_overrides(presets=("card=64x64,cover,jpg,q70",))
    ctx.sent.clear()
    run(on_image_requested(ctx, request("a1", variant="card", rid="redefined")))
    assert sent(ctx, "images.results") == []
    [rerender] = sent(ctx, "render.interactive")
    assert rerender.force and rerender.variant == "card"
    fn, task = THUMBNAIL.render_call(rerender, ctx.settings)
    assert task.preset == "64x64,cover,jpg,q70"
    assert fn(task).path.name == ctx.settings.variant("card").file_name != Path(done.uri).name
