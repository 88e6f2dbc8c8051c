"""The URL a worker advertises to its group (REGEN_ADVERTISED_URL): the one
queries for its partitions are forwarded to, so it must name this worker alone."""

from __future__ import annotations

import socket

import pytest

from regen.settings import Settings
from regen.streams.exceptions import ConfigError


def test_the_advertised_url_is_the_web_host_and_port_by_default():
    assert Settings(web_host="127.0.0.1", web_port=7001).advertised_web_url() == "http://127.0.0.1:7001"
    assert Settings(web_host="::1", web_port=7001).advertised_web_url() == "http://[::1]:7001"


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::", "[::]"])
def test_a_wildcard_bind_address_advertises_the_host_name(wildcard):
    # In a container the host name is the container's: other containers reach it by that name.
    settings = Settings(web_host=wildcard, web_port=6066)
    assert settings.advertised_web_url() == f"http://{socket.gethostname()}:6066"


def test_an_advertised_url_set_by_hand_wins():
    settings = Settings.from_env({"REGEN_ADVERTISED_URL": "https://worker-7.internal:8443/",
                                  "REGEN_WEB_HOST": "0.0.0.0", "REGEN_WEB_ALLOW_ANONYMOUS": "1"})
    assert settings.advertised_web_url() == "https://worker-7.internal:8443"
    assert ("advertised_url", "REGEN_ADVERTISED_URL", "https://worker-7.internal:8443/") in settings.describe()


@pytest.mark.parametrize("url, says", [
    ("worker-7:6066", "http://host:port"),
    ("ftp://worker-7:6066", "http://host:port"),
    ("http://worker-7:6066/api", "no path"),
    ("http://user:pw@worker-7:6066", "no path"),
    ("http://0.0.0.0:6066", "not an address other workers can reach"),
    ("http://worker-7:port", "REGEN_ADVERTISED_URL"),
])
def test_an_advertised_url_other_workers_cannot_use_is_refused(url, says):
    with pytest.raises(ConfigError, match=says):
        Settings.from_env({"REGEN_ADVERTISED_URL": url})


def test_the_app_advertises_the_url_in_the_group_metadata(tmp_path):
    from regen.streams.app import create_app

    a = create_app(Settings(web_host="0.0.0.0", web_port=6066, state_dir=tmp_path), "127.0.0.1:9092")
    b = create_app(Settings(web_host="0.0.0.0", web_port=6066, state_dir=tmp_path,
                            advertised_url="http://worker-2:6066"), "127.0.0.1:9092")
    # The assignor shares this URL with every member: it must differ per worker.
    assert str(a.assignor._url) == f"http://{socket.gethostname()}:6066"  # the assignor's own reading of it
    assert str(b.assignor._url) == "http://worker-2:6066"
