from __future__ import annotations

from pathlib import Path

import pytest

from regen.imaging.errors import InvalidVariant
from regen.imaging.variants import parse_variant
from regen.settings import ENVIRONMENT, Settings
from regen.streams.exceptions import ConfigError


def test_defaults_are_valid():
    Settings.from_env({})


def test_environment_values_are_parsed():
    s = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "REGEN_MEDIA_ROOTS": "/a:/b",
        "REGEN_RENDER_PROCESSES": "3",
        "REGEN_RENDER_TIMEOUT": "2.5",
        "REGEN_WEB_DEBUG_ENDPOINTS": "yes",
        "REGEN_VARIANTS": "h400.jpg, w800.webp",
        "REGEN_PREGENERATE_VARIANTS": "w800.webp",
        "REGEN_COMPOSITE_VARIANT": "h400.jpg",
    })
    assert s.bootstrap_servers == "k1:9092,k2:9092"
    assert s.media_roots == (Path("/a"), Path("/b"))
    assert (s.render_processes, s.render_timeout, s.web_debug_endpoints) == (3, 2.5, True)
    assert s.variants == ("h400.jpg", "w800.webp") and s.pregenerate_variants == ("w800.webp",)


def test_every_setting_has_one_environment_variable():
    from dataclasses import fields

    assert {f.name for f in fields(Settings)} == set(ENVIRONMENT)
    assert len(set(ENVIRONMENT.values())) == len(ENVIRONMENT)


@pytest.mark.parametrize("env, message", [
    ({"REGEN_RENDER_PROCESSES": "many"}, "REGEN_RENDER_PROCESSES='many' is not valid"),
    ({"REGEN_RENDER_PROCESSES": "0"}, "must be at least 1"),
    ({"REGEN_WEB_DEBUG_ENDPOINTS": "maybe"}, "expected one of"),
    ({"REGEN_VARIANTS": "h400.gif"}, "not of the form"),
    ({"REGEN_PREGENERATE_VARIANTS": "h300.jpg"}, "does not configure"),
])
def test_bad_values_name_the_variable_and_the_problem(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_token_never_appears_when_printed():
    s = Settings.from_env({"REGEN_WEB_TOKEN": "s3cret-value"})
    assert "s3cret-value" not in repr(s)
    assert "s3cret-value" not in str(s.describe())


@pytest.mark.parametrize("name, size", [("h400.jpg", (None, 400)), ("w800.webp", (800, None)),
                                        ("full.png", (None, None))])
def test_variant_names(name, size):
    v = parse_variant(name)
    assert (v.width, v.height) == size


@pytest.mark.parametrize("name", ["h0.jpg", "h400", "x400.jpg", "h400.gif", "h99999.jpg", "../h400.jpg"])
def test_invalid_variant_names(name):
    with pytest.raises(InvalidVariant):
        parse_variant(name)


def test_target_size_keeps_aspect_and_never_upscales():
    v = parse_variant("h400.jpg")
    assert v.target_size(1800, 1200) == (600, 400)
    assert v.target_size(1200, 1800) == (267, 400)
    assert v.target_size(300, 200) == (300, 200)
