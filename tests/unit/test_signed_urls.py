"""Signed image URLs: a signature opens exactly one store file until its expiry."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from regen.projections.signed_urls import (
    IMAGE_URL_LIFETIME_S,
    image_signature,
    image_url,
    image_url_key,
    signature_valid,
)

KEY = image_url_key("s3cret")
URI = "thumbnails/ab/abcdef/h400.jpg"
NOW = 1_700_000_000.0


def signed(uri: str = URI, now: float = NOW) -> tuple[str, str, str]:
    """(path, exp, sig) of the URL the overview would hand out."""
    url = urlsplit(image_url(KEY, uri, now))
    query = parse_qs(url.query, strict_parsing=True)
    return url.path, query["exp"][0], query["sig"][0]


def test_a_signed_url_names_the_file_and_opens_it_until_it_expires():
    path, exp, sig = signed()
    assert path == f"/images/{URI}"
    assert IMAGE_URL_LIFETIME_S <= int(exp) - NOW <= IMAGE_URL_LIFETIME_S + 60
    assert signature_valid(KEY, URI, exp, sig, NOW)
    assert signature_valid(KEY, URI, exp, sig, float(exp))


def test_an_expired_signature_is_refused():
    _, exp, sig = signed()
    assert not signature_valid(KEY, URI, exp, sig, int(exp) + 1)


def test_a_signature_opens_no_other_path():
    _, exp, sig = signed()
    for other in ("thumbnails/ab/abcdef/h400.webp", "thumbnails/ab/abcdef/h400.jpg/", "../" + URI, URI + "\n1"):
        assert not signature_valid(KEY, other, exp, sig, NOW), other


def test_a_changed_expiry_is_refused():
    _, exp, sig = signed()
    for other in (str(int(exp) + 3600), "0" + exp, exp + " ", "-" + exp, "1e12", ""):
        assert not signature_valid(KEY, URI, other, sig, NOW), other


def test_a_signature_made_with_another_token_is_refused():
    _, exp, _ = signed()
    forged = image_signature(image_url_key("guess"), URI, int(exp))
    assert not signature_valid(KEY, URI, exp, forged, NOW)
    assert not signature_valid(KEY, URI, exp, "s3cret", NOW)
    assert not signature_valid(KEY, URI, exp, image_signature(KEY, URI, int(exp)).upper(), NOW)


def test_the_url_carries_neither_the_token_nor_the_key():
    url = image_url(KEY, URI, NOW)
    assert "s3cret" not in url and KEY.hex() not in url


def test_one_image_keeps_its_url_across_refreshes_so_the_browser_loads_it_once():
    assert image_url(KEY, URI, NOW) == image_url(KEY, URI, NOW + 1)


def test_without_a_token_image_urls_are_plain_paths():
    assert image_url(None, URI, NOW) == f"/images/{URI}"


def test_odd_characters_in_a_uri_are_quoted_in_the_url_and_signed_as_they_are():
    uri = "thumbnails/a b/x?y#z.jpg"
    url = urlsplit(image_url(KEY, uri, NOW))
    assert url.path == "/images/thumbnails/a%20b/x%3Fy%23z.jpg"
    query = parse_qs(url.query)
    assert signature_valid(KEY, uri, query["exp"][0], query["sig"][0], NOW)
