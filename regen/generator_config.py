"""The image models regen may call, as configured in ``REGEN_GENERATORS``.

``REGEN_GENERATORS`` is a JSON object, one entry per generator name::

    {"sketch": {
        "url": "https://models.example/v1/images",
        "auth_env": "SKETCH_API_KEY",             # the header's value is read from this variable
        "auth_header": "Authorization",            # default; sent as "Bearer <value>" unless auth_scheme is ""
        "request": {"prompt": "{prompt}", "size": "{parameters.size}", "n": 1},
        "image_base64": "data.0.b64_json",         # or "image_url": "data.0.url" with "allowed_hosts"
        "timeout_s": 60, "calls_per_minute": 60, "cost_per_call": 0.04, "max_bytes": 20000000}}

``rate_window_s`` (60 by default) is the window ``calls_per_minute`` is
counted over: at most that many calls in every window of this many seconds.
Anything but 60 is for tests and demos that cannot wait a minute to see the
limit at work.

Settings keep the *name* of the variable holding the secret, never the
secret: ``regen config`` and logs may print a GeneratorConfig whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from regen.streams.exceptions import ConfigError

ENV_NAME = "REGEN_GENERATORS"
GENERATOR_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A response path: dotted keys and list indexes, e.g. "data.0.b64_json".
RESPONSE_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,15}$")
# A model answering in a minute is normal; past ten, the call is abandoned whatever the setting says.
MAX_TIMEOUT_S = 600.0
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
KNOWN_KEYS = frozenset({"url", "auth_env", "auth_header", "auth_scheme", "request", "image_base64", "image_url",
                        "allowed_hosts", "timeout_s", "calls_per_minute", "rate_window_s", "cost_per_call",
                        "max_bytes"})
# A window shorter than a few seconds is swamped by the guard the call window adds for network delay.
MIN_RATE_WINDOW_S, MAX_RATE_WINDOW_S = 2.0, 3600.0


@dataclass(frozen=True)
class GeneratorConfig:
    name: str
    url: str
    request: Any  # a JSON value; strings "{prompt}", "{parameters}", "{parameters.NAME}" are filled in
    image_base64: str = ""  # where the image's base64 text is in the JSON answer
    image_url: str = ""  # or where an image URL is (fetched only from allowed_hosts)
    allowed_hosts: tuple[str, ...] = ()
    auth_env: str = ""  # the environment variable holding the auth header's value ("" : no auth)
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"  # the value is sent as "<scheme> <secret>" ("" : the secret alone)
    timeout_s: float = 60.0
    calls_per_minute: int = 60  # calls in every rate_window_s
    rate_window_s: float = 60.0
    cost_per_call: float = 0.0
    max_bytes: int = DEFAULT_MAX_BYTES  # largest image (and, with base64's overhead, JSON answer) accepted

    def to_dict(self) -> dict[str, Any]:
        """As configured (what ``regen config`` prints): no secret is held here."""
        out = {k: getattr(self, k) for k in sorted(KNOWN_KEYS) if getattr(self, k) not in ("", ())}
        out["allowed_hosts"] = list(self.allowed_hosts)
        return out


def parse_generators(raw: str) -> tuple[GeneratorConfig, ...]:
    """``REGEN_GENERATORS``' JSON, checked; ConfigError naming what is wrong."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{ENV_NAME} is not valid JSON ({e}); expected an object of generator name -> "
                          f"{{\"url\": ..., \"request\": ..., \"image_base64\" or \"image_url\": ...}}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{ENV_NAME} must be a JSON object of generator name -> settings, not {type(data).__name__}")
    return tuple(_one(name, entry) for name, entry in sorted(data.items()))


def _one(name: str, entry: Any) -> GeneratorConfig:
    where = f"{ENV_NAME}[{name!r}]"
    if not GENERATOR_NAME.match(name):
        raise ConfigError(f"{where}: a generator name is 1-64 letters, digits, '.', '_' or '-'")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_KEYS))}")
    url = entry.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ConfigError(f"{where}.url must be an http(s) URL, got {url!r}")
    if "request" not in entry:
        raise ConfigError(f"{where}.request is missing: the JSON body to send, e.g. {{\"prompt\": \"{{prompt}}\"}}")
    base64_path, url_path = entry.get("image_base64", ""), entry.get("image_url", "")
    if bool(base64_path) == bool(url_path):
        raise ConfigError(f"{where}: set exactly one of image_base64 (path of the base64 field in the answer) "
                          f"and image_url (path of an image URL), e.g. \"data.0.b64_json\"")
    for key, path in (("image_base64", base64_path), ("image_url", url_path)):
        if path and (not isinstance(path, str) or not RESPONSE_PATH.match(path)):
            raise ConfigError(f"{where}.{key}={path!r}: expected dotted keys and indexes such as data.0.b64_json")
    hosts = entry.get("allowed_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(f"{where}.allowed_hosts must be a list of host names")
    if url_path and not hosts:
        raise ConfigError(f"{where}: image_url needs allowed_hosts, the only hosts an image may be fetched from")
    auth_env = entry.get("auth_env", "")
    if auth_env and (not isinstance(auth_env, str) or not ENV_VAR_NAME.match(auth_env)):
        raise ConfigError(f"{where}.auth_env={auth_env!r}: the NAME of an environment variable, not its value")
    return GeneratorConfig(
        name=name, url=url, request=entry["request"], image_base64=base64_path, image_url=url_path,
        allowed_hosts=tuple(h.lower() for h in hosts), auth_env=auth_env,
        auth_header=_text(entry, "auth_header", "Authorization", where),
        auth_scheme=_text(entry, "auth_scheme", "Bearer", where),
        timeout_s=_number(entry, "timeout_s", 60.0, where, 0.001, MAX_TIMEOUT_S),
        calls_per_minute=int(_number(entry, "calls_per_minute", 60, where, 1, 1_000_000)),
        rate_window_s=_number(entry, "rate_window_s", 60.0, where, MIN_RATE_WINDOW_S, MAX_RATE_WINDOW_S),
        cost_per_call=_number(entry, "cost_per_call", 0.0, where, 0, 1e9),
        max_bytes=int(_number(entry, "max_bytes", DEFAULT_MAX_BYTES, where, 1024, 1 << 30)),
    )


def _text(entry: dict, key: str, default: str, where: str) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or len(value) > 200 or "\n" in value or "\r" in value:
        raise ConfigError(f"{where}.{key} must be a one-line string")
    return value


def _number(entry: dict, key: str, default: float, where: str, low: float, high: float) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}={value!r}: expected a number from {low:g} to {high:g}")
    return float(value)


def describe_generators(generators: tuple[GeneratorConfig, ...]) -> str:
    return json.dumps({g.name: g.to_dict() for g in generators}, sort_keys=True) if generators else "(none)"
