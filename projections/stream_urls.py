"""Short-lived signed URLs for live streams (``/events/...``). Pure.

A browser's ``EventSource`` cannot send an Authorization header, and the
bearer token must never appear in a URL. So a page asks ``/events/ticket``
(with the token, in the header) for a URL of one stream path, signed like
the dashboard's image URLs (``projections/signed_urls.py``) but with a key
of its own: an image URL cannot open a stream, nor a stream URL an image.

The URL is checked when a stream opens, not while it runs: a stream that
opened in time runs until it ends. ``EventSource`` reconnects with the same
URL, so after the lifetime a reconnection is refused (401) and the page
asks for a new ticket.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote, urlencode

from regen.projections.signed_urls import image_signature, signature_valid

# Long enough to cover the reconnections after a worker restarts or a
# rebalance (seconds each); short enough that a URL lifted from a log opens
# nothing for long.
STREAM_URL_LIFETIME_S = 300

_KEY_CONTEXT = b"regen event stream url v1"
# What may be signed: a stream path and nothing else (no query of its own:
# the signature covers the path alone, so a query would not be covered).
STREAM_PATH = re.compile(r"/events/(overview|(batches|groups|videos)/[^/?#\s]{1,200})")


def stream_url_key(token: str) -> bytes:
    return hmac.new(token.encode("utf-8"), _KEY_CONTEXT, hashlib.sha256).digest()


def stream_url(key: bytes | None, path: str, now: float, expect: int | None = None) -> str:
    """``path`` signed for STREAM_URL_LIFETIME_S (plain when no token is
    configured). ``expect`` (batches only) goes in the query, unsigned: it
    only delays a stream's end, it opens nothing."""
    if not STREAM_PATH.fullmatch(path):
        raise ValueError(f"{path[:120]!r} is not a live stream path (/events/overview, /events/batches/ID, "
                         f"/events/groups/ID, /events/videos/ID)")
    query: dict[str, str | int] = {}
    if expect is not None:
        query["expect"] = expect
    if key is not None:
        exp = int(now) + STREAM_URL_LIFETIME_S
        query.update(exp=exp, sig=image_signature(key, path, exp))
    # Signed as the server sees the path (decoded), sent as a URL must spell it.
    return quote(path, safe="/") + (f"?{urlencode(query)}" if query else "")


def stream_signature_valid(key: bytes, path: str, exp: str, sig: str, now: float) -> bool:
    return signature_valid(key, path, exp, sig, now)
