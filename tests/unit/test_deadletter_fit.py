"""Dead letters are cut to the maximum message size, keeping provenance."""

from __future__ import annotations

import base64
import hashlib

import orjson

from regen.agents.deadletter_fit import CUT_HEADER, fit_letter, fit_letter_hard, message_size

LIMIT = 1_000_000
PROVENANCE = [("kafka_dlt-original-topic", b"t"), ("kafka_dlt-original-offset", b"7"),
              ("kafka_dlt-exception-message", b"e" * 4000)]


def header(letter, name):
    return next((v for k, v in letter.headers if k == name), None)


def test_a_letter_that_fits_is_kept_byte_for_byte():
    original = [("ce_id", b"x")]
    letter = fit_letter(b"k", b"{}", original, PROVENANCE, LIMIT)
    assert (letter.key, letter.value, letter.headers) == (b"k", b"{}", original + PROVENANCE)
    assert header(letter, CUT_HEADER) is None


def test_a_value_near_the_limit_is_summarised_and_everything_else_kept():
    value = bytes(range(256)) * 3900  # 998400 bytes: fits alone, not with the headers
    original = [("ce_id", b"x"), ("ce_type", b"y")]
    letter = fit_letter(b"k", value, original, PROVENANCE, LIMIT)
    assert message_size(letter.key, letter.value, letter.headers) <= LIMIT
    summary = orjson.loads(letter.value)
    assert summary["original_size"] == len(value)
    assert summary["sha256"] == hashlib.sha256(value).hexdigest()
    assert base64.b64decode(summary["head_base64"]) == value[:1024]
    assert letter.headers[:2] == original and all(h in letter.headers for h in PROVENANCE)
    assert header(letter, CUT_HEADER) == b"value"
    assert letter.key == b"k"


def test_original_headers_are_kept_while_they_fit_and_provenance_always():
    original = [(f"h{i}", b"v" * 100_000) for i in range(12)]
    letter = fit_letter(b"k", b"{}", original, PROVENANCE, LIMIT)
    assert message_size(letter.key, letter.value, letter.headers) <= LIMIT
    kept = [h for h in letter.headers if h in original]
    assert kept == original[:len(kept)] and 0 < len(kept) < 12
    assert all(h in letter.headers for h in PROVENANCE)
    assert header(letter, CUT_HEADER) == b"value,headers"
    assert orjson.loads(letter.value)["original_headers_kept"] == len(kept)


def test_a_huge_key_is_replaced_by_its_hash():
    key = b"k" * 2_000_000
    letter = fit_letter(key, b"{}", [], PROVENANCE, LIMIT)
    assert letter.key == b"sha256:" + hashlib.sha256(key).hexdigest().encode()
    assert orjson.loads(letter.value)["original_key_size"] == len(key)


def test_a_hard_cut_keeps_only_provenance_and_the_summary():
    letter = fit_letter_hard(b"k", b"x" * 5000, [("ce_id", b"x")], PROVENANCE)
    assert [k for k, _ in letter.headers] == [k for k, _ in PROVENANCE] + [CUT_HEADER]
    assert len(header(letter, "kafka_dlt-exception-message")) == 1000
    summary = orjson.loads(letter.value)
    assert summary["original_size"] == 5000 and summary["head_base64"] == ""
    assert message_size(letter.key, letter.value, letter.headers) < 3000
