"""Webhook signatures, and which URLs a webhook may call. Pure.

A receiver checks that a body came from regen, unchanged and recently:

    X-Regen-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

The timestamp is inside the signed bytes, so a captured post cannot be
replayed later with a fresh time; ``verify`` refuses one older than its
tolerance (5 minutes by default). Receivers in Python can import ``verify``;
in any other language it is five lines (README, Webhooks).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Regen-Signature"
DEFAULT_TOLERANCE_S = 300.0


class WebhookUrlError(ValueError):
    pass


def sign(secret: str, body: bytes, at: int) -> str:
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of ``now``."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        at = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, at), f"t={at},v1={parts.get('v1', '')}")


def check_webhook_url(url: str, allowed_hosts: tuple[str, ...]) -> str:
    """The URL's host if regen may post to it; WebhookUrlError saying why not.

    Only http(s), and only hosts named in REGEN_WEBHOOK_HOSTS (exactly, or
    ``host:port``): a URL comes from an event anyone with topic access can
    write, and must not turn a worker into a proxy into its network."""
    if len(url) > 2000:
        raise WebhookUrlError("URL longer than 2000 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlError(f"{url[:200]!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise WebhookUrlError(f"{url[:200]!r} carries credentials; put them in the receiver's configuration")
    host = parts.hostname.lower()
    with_port = f"{host}:{parts.port}" if parts.port else host
    allowed = {h.strip().lower() for h in allowed_hosts}
    if host not in allowed and with_port not in allowed:
        raise WebhookUrlError(f"host {with_port!r} is not in REGEN_WEBHOOK_HOSTS "
                              f"({', '.join(sorted(allowed)) or 'empty'}); add it there to allow posts to it")
    return with_port
