"""Webhook signatures a receiver can check, and the hosts a webhook may call."""

from __future__ import annotations

import pytest

from regen.settings import ConfigError, Settings
from regen.webhook_signature import WebhookUrlError, check_webhook_url, sign, verify

BODY = b'{"group_id":"case-1","status":"partial"}'


def test_a_signed_body_verifies_and_any_change_does_not():
    header = sign("s3cret", BODY, 1_800_000_000)
    assert header.startswith("t=1800000000,v1=")
    assert verify("s3cret", header, BODY, now=1_800_000_010)
    assert not verify("other", header, BODY, now=1_800_000_010)
    assert not verify("s3cret", header, BODY + b" ", now=1_800_000_010)
    assert not verify("s3cret", header.replace("t=1800000000", "t=1800000001"), BODY, now=1_800_000_010)
    assert not verify("s3cret", "garbage", BODY, now=1_800_000_010)


def test_an_old_signature_is_refused_as_a_replay():
    header = sign("s3cret", BODY, 1_800_000_000)
    assert not verify("s3cret", header, BODY, now=1_800_000_000 + 301)


@pytest.mark.parametrize("url, problem", [
    ("http://evil.example/x", "not in REGEN_WEBHOOK_HOSTS"),
    ("file:///etc/passwd", r"not an http\(s\) URL"),
    ("http://user:pw@hooks.local/x", "carries credentials"),
    ("http://hooks.local:9999/x", "not in REGEN_WEBHOOK_HOSTS"),
])
def test_only_configured_hosts_may_be_called(url, problem):
    with pytest.raises(WebhookUrlError, match=problem):
        check_webhook_url(url, ("hooks.local:8080", "receiver.internal"))


def test_configured_hosts_pass_with_or_without_their_port():
    assert check_webhook_url("https://receiver.internal/hook", ("receiver.internal",)) == "receiver.internal"
    assert check_webhook_url("http://hooks.local:8080/x", ("hooks.local:8080",)) == "hooks.local:8080"
    assert check_webhook_url("http://Receiver.Internal:81/x", ("receiver.internal",)) == "receiver.internal:81"


def test_settings_refuse_webhooks_without_a_secret_or_to_other_hosts():
    with pytest.raises(ConfigError, match="REGEN_WEBHOOK_SECRET"):
        Settings.from_env({"REGEN_WEBHOOK_URLS": "http://hooks.local/x", "REGEN_WEBHOOK_HOSTS": "hooks.local"})
    with pytest.raises(ConfigError, match="REGEN_WEBHOOK_URLS"):
        Settings.from_env({"REGEN_WEBHOOK_URLS": "http://elsewhere/x", "REGEN_WEBHOOK_HOSTS": "hooks.local",
                           "REGEN_WEBHOOK_SECRET": "s"})
    ok = Settings.from_env({"REGEN_WEBHOOK_URLS": "http://hooks.local/x", "REGEN_WEBHOOK_HOSTS": "hooks.local",
                            "REGEN_WEBHOOK_SECRET": "s3cret"})
    assert ok.webhook_urls == ("http://hooks.local/x",) and "s3cret" not in repr(ok)
