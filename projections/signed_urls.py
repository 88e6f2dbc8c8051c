"""Short-lived signed URLs for the dashboard's thumbnails.

An ``<img>`` cannot send an Authorization header, and the bearer token must
never appear in a URL (URLs end up in access logs, browser history and
Referer headers). So the overview hands out ``/images/<uri>?exp=…&sig=…``:
an HMAC-SHA256 over exactly that uri and expiry, with a key derived from the
token. A leaked URL opens one image for a few minutes and tells nothing
about the token. Pure functions; the clock is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote

# Long enough for a page to load its thumbnails (and the browser to keep
# them) while the dashboard refreshes; short enough that a URL copied out of
# a log or the history stops working soon.
IMAGE_URL_LIFETIME_S = 300
# Expiries are rounded up to this step, so one image keeps the same URL
# across the dashboard's once-a-second refreshes and the browser loads it once.
EXPIRY_STEP_S = 60

_KEY_CONTEXT = b"regen image url v1"
_EXP = re.compile(r"[1-9][0-9]{0,11}")  # one spelling per expiry: no leading zeros
_SIG = re.compile(r"[0-9a-f]{64}")


def image_url_key(token: str) -> bytes:
    """The signing key: derived, so a signature is never the token itself
    and a key for another purpose would use another context string."""
    return hmac.new(token.encode("utf-8"), _KEY_CONTEXT, hashlib.sha256).digest()


def image_signature(key: bytes, uri: str, exp: int) -> str:
    return hmac.new(key, f"{uri}\n{exp}".encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def image_url(key: bytes | None, uri: str, now: float) -> str:
    """The dashboard's URL for store file ``uri``: signed when a key is
    given (a token is configured), plain otherwise."""
    path = "/images/" + quote(uri, safe="/")
    if key is None:
        return path
    exp = (int(now) // EXPIRY_STEP_S + 1) * EXPIRY_STEP_S + IMAGE_URL_LIFETIME_S
    return f"{path}?exp={exp}&sig={image_signature(key, uri, exp)}"


def signature_valid(key: bytes, uri: str, exp: str, sig: str, now: float) -> bool:
    """Whether ``sig`` signs exactly ``uri`` until ``exp`` (unix seconds, as
    given in the query string) and ``exp`` has not passed."""
    if not _EXP.fullmatch(exp) or not _SIG.fullmatch(sig):
        return False
    if int(exp) < now:
        return False
    return hmac.compare_digest(image_signature(key, uri, int(exp)), sig)
