"""Cutting a dead letter down to the maximum message size. Pure.

A dead letter carries the original value and headers plus provenance
headers, so an event near the size limit makes a dead letter over it: the
producer refuses it (not retriable) and the poison would stay unrecorded.
Such a letter keeps everything that identifies the original — provenance
headers always, the value's size, sha256 and first KiB — and says it was cut.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import orjson
from aiokafka.record.default_records import DefaultRecordBatchBuilder

Headers = list[tuple[str, bytes]]

CUT_HEADER = "regen_dlt-cut"  # present only on a cut letter; says what was cut
HEAD_BYTES = 1024  # enough of the original to recognise it
MAX_KEY_BYTES = 1024  # keys are entity ids; a longer one is replaced by its hash
HARD_MESSAGE_BYTES = 1000  # the exception message's share of a letter cut hard


@dataclass(frozen=True)
class Letter:
    key: bytes | None
    value: bytes | None
    headers: Headers


def message_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """The size the producer checks against max_request_size (aiokafka's own estimate)."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


def fit_letter(key: bytes | None, value: bytes | None, original_headers: Headers, provenance: Headers,
               max_bytes: int) -> Letter:
    """The letter as is if it fits in ``max_bytes``; else cut: the value
    summarised, a long key hashed, original headers kept in order while
    they fit, provenance headers always kept."""
    whole = Letter(key, value, [*original_headers, *provenance])
    if message_size(whole.key, whole.value, whole.headers) <= max_bytes:
        return whole
    kept: Headers = []
    digest = _digest(value)
    for item in original_headers:
        trial = _cut(key, value, digest, [*kept, item], provenance, len(original_headers), head=True)
        if message_size(trial.key, trial.value, trial.headers) > max_bytes:
            break
        kept.append(item)
    return _cut(key, value, digest, kept, provenance, len(original_headers), head=True)


def fit_letter_hard(key: bytes | None, value: bytes | None, original_headers: Headers,
                    provenance: Headers) -> Letter:
    """The smallest letter still worth having, for when a cut one was refused
    anyway (a topic with a smaller max.message.bytes): no original headers,
    no head of the value, the exception message shortened."""
    provenance = [(name, v[:HARD_MESSAGE_BYTES] if name == "kafka_dlt-exception-message" else v)
                  for name, v in provenance]
    return _cut(key, value, _digest(value), [], provenance, len(original_headers), head=False)


def _short_key(key: bytes | None) -> bytes | None:
    if key is None or len(key) <= MAX_KEY_BYTES:
        return key
    return b"sha256:" + hashlib.sha256(key).hexdigest().encode()


def _digest(value: bytes | None) -> str | None:
    return None if value is None else hashlib.sha256(value).hexdigest()


def _cut(key: bytes | None, value: bytes | None, digest: str | None, kept: Headers, provenance: Headers,
         original_count: int, head: bool) -> Letter:
    short_key = _short_key(key)
    summary = {
        "cut": "the dead letter exceeded the maximum message size",
        "original_size": None if value is None else len(value),
        "sha256": digest,
        "head_base64": base64.b64encode(value[:HEAD_BYTES]).decode() if head and value is not None else "",
        "original_key_size": None if key is None else len(key),
        "original_headers": original_count,
        "original_headers_kept": len(kept),
    }
    what = ["value"] + (["key"] if short_key != key else []) + (["headers"] if len(kept) < original_count else [])
    return Letter(short_key, orjson.dumps(summary), [*kept, *provenance, (CUT_HEADER, ",".join(what).encode())])
