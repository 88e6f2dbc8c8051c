"""Images by URL, the pure part: which variant a URL names (content
negotiation on ``Accept``), whether an ``If-None-Match`` matches, and what a
view of ``/images/{kind}/{id}/{variant}`` answers given what the owner's
tables say about the target and the clock. No I/O here; the view
(agents/image_views.py) reads the tables and the store and publishes.

A view's answer, decided step by step (:func:`decide`):

1. The wanted revision has an output: ``Hit`` (or ``NotModified`` when the
   client already holds those bytes: the ETag is the output's sha256).
2. Its job failed: tried again on view (``Render(force=True)``) once the
   failure is older than the retry-on-view delay and no view tried it
   within that delay; otherwise ``Failed``, saying when it will be tried.
3. Anything else (never rendered, stale, queued, running): ``Render``. The
   view publishes one interactive request (many viewers share it) and waits
   a few seconds; past that, :func:`pending_answer`: 202 or the placeholder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regen.projections.instants import epoch
from regen.projections.signed_urls import image_signature
from regen.projections.state import JobState

# --- which variant a URL names -----------------------------------------------------

# The media type of each output extension, and which wins when Accept
# rates several equally: the smallest files first.
MEDIA_TYPES = {"avif": "image/avif", "webp": "image/webp", "jpg": "image/jpeg", "jpeg": "image/jpeg",
               "png": "image/png"}
PREFERENCE = ("avif", "webp", "jpg", "jpeg", "png")
# A browser's Accept is about 100 characters; a longer one is not worth parsing in full.
MAX_ACCEPT_CHARS = 1024
MAX_ACCEPT_ENTRIES = 32
MAX_IF_NONE_MATCH_CHARS = 4096
_ID = re.compile(r"[A-Za-z0-9._:@-]{1,200}")  # schemas/bounds.py ID_PATTERN, Length(200, 1)


@dataclass(frozen=True)
class Chosen:
    variant: str
    negotiated: bool  # picked by Accept: the answer varies with it


@dataclass(frozen=True)
class Refused:
    status: int  # 404 (no such kind, variant or id) or 406 (none of its formats acceptable)
    message: str


def id_problem(target_id: str) -> str | None:
    """Why ``target_id`` cannot name a target (ids are untrusted: bounded,
    the event schema's characters only, never ``.`` or ``..``), or None."""
    if not _ID.fullmatch(target_id) or target_id in (".", ".."):
        return (f"{target_id[:80]!r} is not a target id: 1-200 characters of A-Z a-z 0-9 . _ : @ -"
                f" (not '.' or '..')")
    return None


def choose_variant(asked: str, configured: tuple[str, ...], accept: str | None) -> Chosen | Refused:
    """The configured variant ``asked`` names. With an extension (or a
    preset's plain name) it is exact; a base name alone (``h400``) picks
    among the configured variants of that base by ``Accept``."""
    if asked in configured:
        return Chosen(asked, negotiated=False)
    if "." not in asked:
        candidates = [v for v in configured if "." in v and v.rsplit(".", 1)[0] == asked
                      and v.rsplit(".", 1)[1] in MEDIA_TYPES]
        if candidates:
            best = negotiate(candidates, accept)
            if best is None:
                offered = ", ".join(MEDIA_TYPES[v.rsplit(".", 1)[1]] for v in candidates)
                return Refused(406, f"{asked!r} comes as {offered}; the Accept header takes none of them")
            return Chosen(best, negotiated=True)
    bases = sorted({v.rsplit(".", 1)[0] for v in configured if "." in v})
    return Refused(404, f"no variant {asked[:80]!r}; configured: {', '.join(configured)} "
                        f"(or a base name, chosen by Accept: {', '.join(bases)})")


def negotiate(candidates: list[str], accept: str | None) -> str | None:
    """The candidate (``name.ext``) ``Accept`` rates highest, ties broken by
    PREFERENCE; None if it rates every one 0. No Accept: anything goes."""
    ranges = parse_accept(accept)

    def rank(variant: str) -> tuple[float, int]:
        ext = variant.rsplit(".", 1)[1]
        return quality(ranges, MEDIA_TYPES[ext]), -PREFERENCE.index(ext)

    best = max(candidates, key=rank)
    return best if rank(best)[0] > 0 else None


def parse_accept(accept: str | None) -> list[tuple[str, float]]:
    """``Accept`` as (media range, q) pairs; malformed entries are skipped."""
    if not accept:
        return [("*/*", 1.0)]
    ranges = []
    for entry in accept[:MAX_ACCEPT_CHARS].split(",")[:MAX_ACCEPT_ENTRIES]:
        parts = [p.strip() for p in entry.split(";")]
        media = parts[0].lower()
        if media.count("/") != 1:
            continue
        q = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0  # a q that does not parse is not an acceptance
        ranges.append((media, q))
    return ranges


def quality(ranges: list[tuple[str, float]], media_type: str) -> float:
    """The q of the most specific range matching ``media_type`` (RFC 9110
    12.5.1: ``image/webp`` over ``image/*`` over ``*/*``); 0 if none does."""
    main = media_type.split("/")[0]
    best: tuple[int, float] = (-1, 0.0)
    for media, q in ranges:
        specificity = 2 if media == media_type else 1 if media == f"{main}/*" else 0 if media == "*/*" else -1
        if specificity > best[0] or (specificity == best[0] and specificity >= 0 and q > best[1]):
            best = (specificity, q)
    return best[1] if best[0] >= 0 else 0.0


# --- conditional requests ------------------------------------------------------------

def etag_of(sha256: str) -> str:
    return f'"{sha256}"'


def none_match(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` (RFC 9110 13.1.2: weak
    comparison, so ``W/"x"`` matches ``"x"``; a list; ``*``)."""
    if not if_none_match:
        return False
    header = if_none_match[:MAX_IF_NONE_MATCH_CHARS].strip()
    if header == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(",") if tag.strip())


# --- signed URLs ---------------------------------------------------------------------

def signed_path(kind: str, target_id: str, variant: str) -> str:
    """What a signature of an image URL covers. It starts with ``/``, which
    a store path never does, so a signature for one never opens the other."""
    return f"/images/{kind}/{target_id}/{variant}"


def signed_image_url(key: bytes, kind: str, target_id: str, variant: str, expires: int) -> str:
    """``/images/{kind}/{id}/{variant}?exp=…&sig=…``, for an ``<img>`` when
    REGEN_WEB_TOKEN is set (it sends no header): valid until ``expires``."""
    path = signed_path(kind, target_id, variant)
    return f"{path}?exp={expires}&sig={image_signature(key, path, expires)}"


# --- what a view answers -------------------------------------------------------------

@dataclass(frozen=True)
class Rules:
    retry_on_view_s: float
    max_age_s: int
    private: bool  # a token guards the API: no shared cache may keep the bytes
    placeholder: bool  # a placeholder image is configured
    retry_pending_s: int = 2  # the Retry-After of a 202


@dataclass(frozen=True)
class Hit:
    output: dict  # uri, sha256, width, height, bytes

    @property
    def etag(self) -> str:
        return etag_of(self.output["sha256"])


@dataclass(frozen=True)
class NotModified:
    etag: str


@dataclass(frozen=True)
class Render:
    force: bool  # True: a failed image tried again on view


@dataclass(frozen=True)
class Failed:
    reason: str
    error_code: str
    error: str
    failed_at: str
    retry_at: float  # unix seconds: when a view tries it again


Decision = Hit | NotModified | Render | Failed


def decide(output: dict | None, job: JobState | None, if_none_match: str | None, last_retry_at: float | None,
           now: float, rules: Rules) -> Decision:
    """What a view answers first. ``output``: the one recorded for the
    target's wanted revision (None: none); ``job``: that revision's job row;
    ``last_retry_at``: when a view last tried this image again (unix s)."""
    if output is not None:
        hit = Hit(output)
        return NotModified(hit.etag) if none_match(if_none_match, hit.etag) else hit
    if job is not None and job.status == "failed":
        failed_at = epoch(job.finished_at or job.updated_at) or now
        retry_at = failed_at + rules.retry_on_view_s
        if last_retry_at is not None:
            retry_at = max(retry_at, last_retry_at + rules.retry_on_view_s)
        if now >= retry_at:
            return Render(force=True)
        return Failed(job.reason or "permanent", job.error_code or "failed", job.error or "",
                      job.finished_at or job.updated_at, retry_at)
    return Render(force=False)


@dataclass(frozen=True)
class Reply:
    """An answer as HTTP: status, headers and either a JSON body or the placeholder's bytes."""

    status: int
    headers: dict[str, str]
    body: dict | None = None
    placeholder: str | None = None  # "pending" or "failed": the view sends the placeholder image


def hit_headers(etag: str, content_type: str, negotiated: bool, rules: Rules) -> dict[str, str]:
    headers = {"ETag": etag, "Cache-Control": f"{'private' if rules.private else 'public'}, "
                                              f"max-age={rules.max_age_s}", "Content-Type": content_type}
    if negotiated:
        headers["Vary"] = "Accept"
    return headers


def not_modified_headers(etag: str, negotiated: bool, rules: Rules) -> dict[str, str]:
    headers = hit_headers(etag, "", negotiated, rules)
    del headers["Content-Type"]
    return headers


def pending_answer(waited_s: float, negotiated: bool, rules: Rules) -> Reply:
    """Still rendering after the wait: 202 with Retry-After, or the placeholder."""
    vary = {"Vary": "Accept"} if negotiated else {}
    if rules.placeholder:
        return Reply(200, {"Cache-Control": "no-store", **vary}, placeholder="pending")
    return Reply(202, {"Retry-After": str(rules.retry_pending_s), "Cache-Control": "no-store", **vary},
                 body={"status": "pending", "retry_after_s": rules.retry_pending_s,
                       "message": f"being rendered (waited {waited_s:.1f} s); ask again in "
                                  f"{rules.retry_pending_s} s"})


def failed_answer(failed: Failed, now: float, negotiated: bool, rules: Rules) -> Reply:
    """A failure not yet due for a retry: 503 with Retry-After until the
    view tries it again (JSON saying why), or the placeholder flagged failed."""
    retry_after = max(1, int(failed.retry_at - now + 0.999))
    vary = {"Vary": "Accept"} if negotiated else {}
    if rules.placeholder:
        return Reply(200, {"Cache-Control": "no-store", **vary}, placeholder="failed")
    return Reply(503, {"Retry-After": str(retry_after), "Cache-Control": "no-store", **vary},
                 body={"status": "failed", "reason": failed.reason, "error_code": failed.error_code,
                       "error": failed.error, "failed_at": failed.failed_at, "retry_after_s": retry_after,
                       "message": f"rendering failed ({failed.reason}, {failed.error_code}); a view tries it "
                                  f"again in {retry_after} s, or fix the source and import it again"})


