"""Images by URL: ``GET /images/{kind}/{id}/{variant}`` on every worker.

The URL names what a page wants (the h400 thumbnail of asset 42), not a
file: the answer is the current output of the target's wanted revision,
rendered on the spot if it is missing or stale. Any worker answers; the
query goes to the owner of the id's partition like every other
(agents/routing.py), its ``If-None-Match`` and ``Accept`` with it. What to
answer is decided by projections/image_answers.py; this module reads the
tables and the store, publishes, waits, and speaks HTTP:

- the bytes, with ``ETag`` (the sha256) and ``Cache-Control``; 304 when the
  client holds them already;
- missing: one interactive ImageRequested (however many viewers,
  agents/image_waiters.py), then up to REGEN_IMAGE_WAIT_S for the projector
  to fold its completion; past that 202 + Retry-After, or the placeholder;
- failed: a forced request once the failure is older than
  REGEN_IMAGE_RETRY_ON_VIEW_S (at most once per that interval per image),
  else 503 with Retry-After and why (JSON), or the placeholder flagged failed.

Auth as the other views: the bearer token when REGEN_WEB_TOKEN is set, or a
signed URL (an ``<img>`` sends no header; see image_answers.signed_image_url).
Registered before the store-path route ``/images/{path:.+}`` (views.py): a
store path has four components (``thumbnails/ab/<sha>/h400.jpg``), this
route three, so the two never take each other's URLs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path
from typing import cast

import aiohttp
from faust.web import Request, Response, View
from prometheus_client import Counter

from regen.agents.context import WorkerContext
from regen.agents.image_bytes import VerifiedBytes
from regen.agents.image_waiters import ImageKey, TooManyPending, ViewRenders
from regen.agents.routing import (
    ANSWERED_BY,
    FORWARD_TIMEOUT_S,
    FORWARDED_BY,
    PLACEHOLDER,
    RETRY_UNREACHABLE_S,
    Forward,
    Local,
    decide,
    forward,
    group_view,
)
from regen.imaging.store_files import StoreFileError, read_store_file
from regen.kinds import KINDS
from regen.kinds.base import Kind
from regen.projections import image_answers as answers
from regen.projections.signed_urls import image_url_key, signature_valid
from regen.projections.state import JobState
from regen.settings import ENVIRONMENT, Settings
from regen.streams.codec import now_iso
from regen.streams.exceptions import ConfigError
from regen.streams.topics import IMAGES_REQUESTED, partition_for

# An output bigger than this is not one of ours (views.py has the same cap).
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_PLACEHOLDER_BYTES = 1024 * 1024
PLACEHOLDER_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                     ".gif": "image/gif", ".svg": "image/svg+xml", ".avif": "image/avif"}
BUILTIN_PLACEHOLDER = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300" viewBox="0 0 400 300">'
    '<rect width="400" height="300" fill="#e5e7eb"/>'
    '<text x="200" y="158" font-family="sans-serif" font-size="22" fill="#4b5563" text-anchor="middle">{}</text>'
    '</svg>')
BUILTIN_TEXT = {"pending": "rendering…", "failed": "could not be rendered"}


def register_image_views(ctx: WorkerContext) -> None:
    app, settings, tables = ctx.app, ctx.settings, ctx.tables
    self_url = settings.advertised_web_url()
    url_key = image_url_key(settings.web_token) if settings.web_token else None
    rules = answers.Rules(retry_on_view_s=settings.image_retry_on_view, max_age_s=settings.image_max_age,
                          private=bool(settings.web_token), placeholder=bool(settings.image_placeholder))
    placeholders = load_placeholders(settings)
    counted = Counter("regen_image_url_answers", "Answers to GET /images/{kind}/{id}/{variant} by this worker "
                      "(hit, not_modified, rendered_on_view, pending, placeholder, failed, retried_on_view)",
                      ["answer"], registry=ctx.metrics.registry)

    async def publish(event) -> None:
        # ctx.emit retries until the broker takes it; a viewer waits no longer than its wait.
        await asyncio.wait_for(ctx.emit(IMAGES_REQUESTED, event), timeout=max(settings.image_wait, 1.0))

    renders = ViewRenders(publish, stale_after_s=max(60.0, settings.render_timeout))
    ctx.completion_hooks.append(renders.completed)

    def allowed(request: Request, kind: str, target_id: str, variant: str) -> bool:
        if not settings.web_token:
            return True
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {settings.web_token}".encode()):
            return True
        return url_key is not None and signature_valid(
            url_key, answers.signed_path(kind, target_id, variant), request.query.get("exp", ""),
            request.query.get("sig", ""), time.time())

    def json_reply(view: View, status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
        return view.json(body, status=status, headers={ANSWERED_BY: self_url, **(headers or {})})

    def reply(view: View, answer: answers.Reply) -> Response:
        headers = {ANSWERED_BY: self_url, **answer.headers}
        if answer.placeholder is not None:
            data, content_type = placeholders[answer.placeholder]
            return view.bytes(data, content_type=content_type, status=answer.status,
                              headers={**headers, PLACEHOLDER: answer.placeholder})
        return view.json(answer.body, status=answer.status, headers=headers)

    in_memory = VerifiedBytes()

    async def read_verified(output: dict) -> bytes | None:
        """The output's bytes if the file holds exactly what was recorded
        (its sha256 is the ETag); None: missing or changed, render again.
        Bytes checked lately come from memory (agents/image_bytes.py)."""
        uri, sha256 = output["uri"], output["sha256"]
        kept = in_memory.get(uri, sha256)
        if kept is not None:
            return kept

        def read() -> bytes | None:
            try:
                data = read_store_file(Path(settings.image_store), uri, MAX_IMAGE_BYTES)
            except (StoreFileError, OSError):
                return None
            return data if hashlib.sha256(data).hexdigest() == sha256 else None

        data = await asyncio.to_thread(read)  # off the event loop: a slow disk must not stall the consumers
        if data is None:
            in_memory.forget(uri, sha256)
        else:
            in_memory.put(uri, sha256, data)
        return data

    async def answer_here(view: View, request: Request, kind: Kind, target_id: str,
                          chosen: answers.Chosen) -> Response:
        variant, negotiated = chosen.variant, chosen.negotiated
        key: ImageKey = (kind.name, target_id, variant)
        table = tables.of(kind.table)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + settings.image_wait
        waited = asked = False
        while True:
            state = kind.read(table.get(target_id))
            if state is None:
                return json_reply(view, 404, {"error": f"{kind.noun} {target_id!r} {kind.never_known}"})
            output = kind.current_output(state, variant)
            job = None
            if output is None:  # only then does the job's row matter (a hit reads one table, not two)
                job = JobState.from_dict(tables.jobs.get(kind.plan(state, variant, "interactive", now_iso()).job_id))
            decision = answers.decide(output, job, request.headers.get("If-None-Match"), renders.last_retry(key),
                                      time.time(), rules)
            if isinstance(decision, answers.NotModified):
                counted.labels("not_modified").inc()
                return view.bytes(b"", status=304, headers={
                    ANSWERED_BY: self_url, **answers.not_modified_headers(decision.etag, negotiated, rules)})
            if isinstance(decision, answers.Hit):
                data = await read_verified(decision.output)
                if data is not None:
                    counted.labels("rendered_on_view" if waited else "hit").inc()
                    content_type = answers.MEDIA_TYPES.get(decision.output["uri"].rsplit(".", 1)[-1].lower(),
                                                           "application/octet-stream")
                    return view.bytes(data, headers={
                        ANSWERED_BY: self_url, **answers.hit_headers(decision.etag, content_type, negotiated, rules)})
                decision = answers.Render(force=False)  # intake finds the file gone or changed and renders it again
            if isinstance(decision, answers.Failed):
                answer = answers.failed_answer(decision, time.time(), negotiated, rules)
                counted.labels("placeholder" if answer.placeholder else "failed").inc()
                return reply(view, answer)
            # Render: ask once per view (joining any other view's request), then wait for its completion.
            assert isinstance(decision, answers.Render)
            if asked:  # the render this view waited for finished, and the image is still not there
                return pending(view, started, negotiated)
            try:
                future, published = await renders.requested(key, force=decision.force)
            except TooManyPending as e:
                return json_reply(view, 503, {"error": f"{e}; try again in {RETRY_UNREACHABLE_S} s"},
                                  {"Retry-After": str(RETRY_UNREACHABLE_S)})
            except TimeoutError:
                return json_reply(view, 503, {"error": "the broker did not take the render request in time; "
                                                       f"try again in {RETRY_UNREACHABLE_S} s"},
                                  {"Retry-After": str(RETRY_UNREACHABLE_S)})
            asked = True
            if published and decision.force:
                counted.labels("retried_on_view").inc()
            try:
                await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return pending(view, started, negotiated)
            waited = True

    def pending(view: View, started: float, negotiated: bool) -> Response:
        answer = answers.pending_answer(asyncio.get_running_loop().time() - started, negotiated, rules)
        counted.labels("placeholder" if answer.placeholder else "pending").inc()
        return reply(view, answer)

    def http_client() -> aiohttp.ClientSession:
        return cast(aiohttp.ClientSession, app.http_client)

    @app.page("/images/{kind}/{target_id}/{variant}")
    class ImageByUrlView(View):
        """The current image of a target, by kind, id and variant."""

        async def get(self, request: Request, kind: str, target_id: str, variant: str) -> Response:
            known = KINDS.get(kind)
            if known is None:
                return self.json({"error": f"no kind of image named {kind[:40]!r}; /images/{{kind}}/{{id}}/"
                                           f"{{variant}} takes one of: {', '.join(KINDS)}"}, status=404)
            if not allowed(request, kind, target_id, variant):
                return self.json({"error": "missing or wrong bearer token (see REGEN_WEB_TOKEN), or an "
                                           "expired or wrong signed URL"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="regen"'})
            problem = answers.id_problem(target_id)
            if problem is not None:
                return self.json({"error": problem}, status=404)
            chosen = answers.choose_variant(variant, settings.variants, request.headers.get("Accept"))
            if isinstance(chosen, answers.Refused):
                return self.json({"error": chosen.message}, status=chosen.status)
            table = tables.of(known.table)
            partition = partition_for(target_id, settings.partitions)
            where = decide(group_view(app, self_url), table.name, table.changelog_topic.get_topic_name(),
                           partition, request.headers.get(FORWARDED_BY))
            if isinstance(where, Local):
                return await answer_here(self, request, known, target_id, chosen)
            if isinstance(where, Forward):
                try:
                    answer = await forward(http_client(), where.url, str(request.rel_url),
                                           request.headers.get("Authorization"), self_url,
                                           timeout=settings.image_wait + FORWARD_TIMEOUT_S,
                                           passed_on=request.headers)
                except (aiohttp.ClientError, TimeoutError) as e:
                    return self.json({"error": f"{where.url}, which owns {table.name} partition {partition}, did "
                                               f"not answer ({type(e).__name__}); try again in "
                                               f"{RETRY_UNREACHABLE_S} s"}, status=503,
                                     headers={"Retry-After": str(RETRY_UNREACHABLE_S)})
                return self.bytes(answer.body, status=answer.status, headers=answer.headers)
            return self.json({"error": f"try again in {where.retry_after} s: {where.reason}",
                              "retry_after_s": where.retry_after}, status=503,
                             headers={"Retry-After": str(where.retry_after)})


def load_placeholders(settings: Settings) -> dict[str, tuple[bytes, str]]:
    """flag ("pending", "failed") -> (bytes, content type) of the placeholder
    image; empty when none is configured. A file is read once, at start."""
    chosen = settings.image_placeholder
    if not chosen:
        return {}
    if chosen == "builtin":
        return {flag: (BUILTIN_PLACEHOLDER.format(text).encode(), "image/svg+xml")
                for flag, text in BUILTIN_TEXT.items()}
    path = Path(chosen).expanduser()
    name = ENVIRONMENT["image_placeholder"]
    try:
        data = read_placeholder(path)
    except OSError as e:
        raise ConfigError(f"{name}={chosen!r}: cannot read it ({e.strerror or e}); name an image file, "
                          f"'builtin', or leave it empty (answer 202)") from e
    content_type = PLACEHOLDER_TYPES[path.suffix.lower()]
    return {flag: (data, content_type) for flag in BUILTIN_TEXT}


def read_placeholder(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_PLACEHOLDER_BYTES + 1)
    if len(data) > MAX_PLACEHOLDER_BYTES:
        raise OSError(f"over {MAX_PLACEHOLDER_BYTES} bytes")
    return data
