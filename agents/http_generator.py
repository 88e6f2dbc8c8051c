"""One call to an image model over HTTP: the built-in generator.

The request is the generator's JSON template with the prompt and parameters
filled in; the answer is JSON holding the image as base64 text or as a URL
on an allowed host. Everything the model sends back is untrusted: answers
and images are read up to a bound (a Content-Length over it is refused
before a byte is read), redirects are never followed (a redirect could
leave the allowed hosts), and the image itself is checked later like any
source, in a render process (imaging/generated.py).

Failures are GatherFailed: 429 and 5xx are retriable (with the server's
Retry-After), other 4xx and a malformed answer are permanent, a connection
that fails is retriable. The caller bounds the whole call with a timeout
that cancels it: the socket is closed, not left to the server.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from regen.generator_config import GeneratorConfig
from regen.kinds.base import GatherFailed

_PARAMETER = re.compile(r"^\{parameters\.([A-Za-z0-9_.-]{1,64})\}$")
# A JSON answer carrying a base64 image is 4/3 of the image, plus the rest of the JSON.
JSON_OVERHEAD_BYTES = 64 * 1024
# A Retry-After past this is taken as this: a hostile or confused server must
# not stop a generator for a day; the job's retries decide after that.
MAX_RETRY_AFTER_S = 120.0


class Outcome:
    """Labels of regen_generator_calls_total{outcome}."""

    OK = "ok"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    BAD_RESPONSE = "bad_response"


class CallFailed(GatherFailed):
    """A GatherFailed that names its metrics outcome."""

    def __init__(self, outcome: str, code: str, message: str, *, permanent: bool,
                 retry_after: float | None = None, timeout: bool = False) -> None:
        super().__init__(code, message, permanent=permanent, retry_after=retry_after, timeout=timeout)
        self.outcome = outcome


# --- pure parts ------------------------------------------------------------------

def fill_template(template: Any, prompt: str, parameters: dict[str, Any]) -> Any:
    """The request body: every string "{prompt}", "{parameters}" or
    "{parameters.NAME}" replaced by that value (NAME missing: the entry is
    left out); "{prompt}" inside a longer string is replaced as text."""
    if isinstance(template, dict):
        filled = {k: fill_template(v, prompt, parameters) for k, v in template.items()}
        return {k: v for k, v in filled.items() if v is not _MISSING}
    if isinstance(template, list):
        return [v for v in (fill_template(v, prompt, parameters) for v in template) if v is not _MISSING]
    if isinstance(template, str):
        if template == "{prompt}":
            return prompt
        if template == "{parameters}":
            return parameters
        match = _PARAMETER.match(template)
        if match:
            return parameters.get(match[1], _MISSING)
        return template.replace("{prompt}", prompt)
    return template


_MISSING = object()


def find(answer: Any, path: str) -> Any:
    """The value at a dotted path ("data.0.b64_json"); CallFailed if absent."""
    node = answer
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise CallFailed(Outcome.BAD_RESPONSE, "bad_response",
                             f"the generator's answer has no {path!r} (missing at {part!r})", permanent=True)
    return node


def retry_after_s(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from now (delta-seconds or an HTTP date), bounded."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,6})?", value):  # delta-seconds (a fraction tolerated)
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, min(when.timestamp() - now, MAX_RETRY_AFTER_S))


def decode_base64_image(text: Any, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise CallFailed(Outcome.BAD_RESPONSE, "bad_response", "the answer's image field is not a string",
                         permanent=True)
    if text.startswith("data:") and "," in text[:200]:
        text = text.split(",", 1)[1]  # a data: URL
    if len(text) > (max_bytes + 2) // 3 * 4 + 4:
        raise CallFailed(Outcome.BAD_RESPONSE, "too_large", f"the answer's image is over {max_bytes} bytes "
                         "(the generator's max_bytes)", permanent=True)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise CallFailed(Outcome.BAD_RESPONSE, "bad_response", f"the answer's image is not base64 ({e})",
                         permanent=True) from e


def check_image_url(url: Any, config: GeneratorConfig) -> str:
    if not isinstance(url, str) or len(url) > 8192:
        raise CallFailed(Outcome.BAD_RESPONSE, "bad_response", "the answer's image URL is not a string",
                         permanent=True)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or parts.username or parts.password or host not in config.allowed_hosts:
        raise CallFailed(Outcome.BAD_RESPONSE, "image_host_not_allowed",
                         f"the answer's image URL {url[:200]!r} is not http(s) on an allowed host "
                         f"({', '.join(config.allowed_hosts)}; the generator's allowed_hosts)", permanent=True)
    return url


def status_failure(status: int, retry_after: str | None, what: str, now: float) -> CallFailed:
    if status == 429:
        return CallFailed(Outcome.RATE_LIMITED, "rate_limited", f"{what} answered 429 Too Many Requests",
                          permanent=False, retry_after=retry_after_s(retry_after, now))
    if status >= 500:
        return CallFailed(Outcome.SERVER_ERROR, "generator_error", f"{what} answered {status}",
                          permanent=False, retry_after=retry_after_s(retry_after, now))
    return CallFailed(Outcome.REFUSED, "generator_refused",
                      f"{what} answered {status}: the request is refused as it is (check the generator's "
                      f"url, request template and auth_env)", permanent=True)


# --- the call --------------------------------------------------------------------

async def generate(session: aiohttp.ClientSession, config: GeneratorConfig, prompt: str,
                   parameters: dict[str, Any], secret: str | None) -> bytes:
    """The image bytes the model returned (unchecked as an image). The
    caller wraps this in the generator's timeout."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if config.auth_env:
        if not secret:
            raise CallFailed(Outcome.REFUSED, "generator_auth_missing",
                             f"generator {config.name!r}: environment variable {config.auth_env} is not set "
                             f"in the worker", permanent=True)
        headers[config.auth_header] = f"{config.auth_scheme} {secret}" if config.auth_scheme else secret
    body = orjson.dumps(fill_template(config.request, prompt, parameters))
    json_limit = (config.max_bytes + 2) // 3 * 4 + JSON_OVERHEAD_BYTES
    try:
        async with session.post(config.url, data=body, headers=headers, allow_redirects=False) as response:
            if not 200 <= response.status < 300:
                raise status_failure(response.status, response.headers.get("Retry-After"),
                                     f"generator {config.name!r}", time.time())
            raw = await read_bounded(response, json_limit, f"generator {config.name!r}'s answer")
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise CallFailed(Outcome.BAD_RESPONSE, "bad_response",
                             f"generator {config.name!r} answered with something that is not JSON ({e})",
                             permanent=True) from e
        if config.image_base64:
            return decode_base64_image(find(answer, config.image_base64), config.max_bytes)
        url = check_image_url(find(answer, config.image_url), config)
        async with session.get(url, allow_redirects=False) as image:
            if image.status != 200:
                raise status_failure(image.status, image.headers.get("Retry-After"), f"image URL {url[:200]}",
                                     time.time())
            return await read_bounded(image, config.max_bytes, f"the image at {url[:200]}")
    except aiohttp.ClientError as e:  # refused, reset, DNS: the service may be back soon
        raise CallFailed(Outcome.UNREACHABLE, "generator_unreachable",
                         f"generator {config.name!r} at {config.url}: {type(e).__name__}: {e}",
                         permanent=False) from e


async def read_bounded(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise CallFailed(Outcome.BAD_RESPONSE, "too_large", f"{what} is {declared} bytes, over the {limit}-byte "
                         "bound (the generator's max_bytes)", permanent=True)
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise CallFailed(Outcome.BAD_RESPONSE, "too_large", f"{what} is over the {limit}-byte bound "
                             "(the generator's max_bytes)", permanent=True)
        chunks.append(chunk)
    return b"".join(chunks)
