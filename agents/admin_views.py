"""Operator commands over HTTP, behind an admin token of their own.

``POST /admin/retry``, ``/admin/cancel``, ``/admin/pause``, ``/admin/resume``
and ``/admin/deadletters/redrive`` take the command's fields as a JSON body,
check them like any event on the ``control`` topic, publish the command
there and answer 202 with its id: they do nothing the CLI's commands do not,
and the workers apply them the same way (agents/control.py).

The token is ``REGEN_ADMIN_TOKEN``, never ``REGEN_WEB_TOKEN`` (settings
refuse to start with both equal), sent as ``Authorization: Bearer``. No
admin token configured: the routes answer 404 saying how to turn them on.
``GET /control/background`` (read token) tells whether background rendering
is paused, since when, by whom and why.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Any, cast

import orjson
from faust.web import Request, Response, View

from regen.agents.context import WorkerContext
from regen.agents.control import BackgroundWatch
from regen.projections.control import build_command
from regen.schemas.exceptions import SchemaError
from regen.settings import ENVIRONMENT
from regen.streams.codec import encode, now_iso
from regen.streams.results import end_offsets
from regen.streams.topics import CONTROL, DEADLETTER, topic_name

# A command is a handful of short fields; anything bigger is not one.
MAX_BODY_BYTES = 64 * 1024
# route below /admin/ -> the command it publishes
ADMIN_COMMANDS = {
    "retry": "RetryFailed",
    "cancel": "CancelRequested",
    "pause": "BackgroundPaused",
    "resume": "BackgroundResumed",
    "deadletters/redrive": "DeadLettersRedriven",
}


def register_admin_views(ctx: WorkerContext, bootstrap: str, watch: BackgroundWatch) -> None:
    app, settings = ctx.app, ctx.settings

    def refusal(view: View, request: Request) -> Response | None:
        if not settings.admin_token:
            return view.json({"error": f"operator commands over HTTP are off: set {ENVIRONMENT['admin_token']} on "
                                       f"the workers (a token other than {ENVIRONMENT['web_token']}), or use the "
                                       "regen CLI"}, status=404)
        given = request.headers.get("Authorization", "")
        if not given:
            return view.json({"error": f"send Authorization: Bearer <{ENVIRONMENT['admin_token']}>"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="regen-admin"'})
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.admin_token}".encode()):
            return view.json({"error": f"wrong admin token (only {ENVIRONMENT['admin_token']} commands; "
                                       f"{ENVIRONMENT['web_token']} only reads)"}, status=403)
        return None

    async def publish(view: View, request: Request, event_type: str) -> Response:
        refused = refusal(view, request)
        if refused is not None:
            return refused
        http = cast(Any, request)  # aiohttp's request under Faust's web driver: its size and address
        if (http.content_length or 0) > MAX_BODY_BYTES:
            return view.json({"error": f"body over {MAX_BODY_BYTES} bytes; a command is a few short fields"},
                             status=413)
        raw = await http.read()  # aiohttp stops a body without a length at its own 1 MB cap
        if len(raw) > MAX_BODY_BYTES:
            return view.json({"error": f"body over {MAX_BODY_BYTES} bytes; a command is a few short fields"},
                             status=413)
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as e:
            return view.json({"error": f"body is not JSON: {e}"}, status=400)
        up_to = None
        if event_type == "DeadLettersRedriven":
            up_to = await end_offsets(settings, bootstrap, topic_name(settings, DEADLETTER))
        try:
            command = build_command(event_type, body, command_id=uuid.uuid4().hex, at=now_iso(),
                                    requested_by=f"http admin ({http.remote or 'unknown'})", up_to=up_to)
        except SchemaError as e:
            return view.json({"error": str(e)}, status=400)
        envelope = encode(command, "regen/admin-http")
        await ctx.send_durably(topic_name(settings, CONTROL), envelope.key, envelope.value, envelope.headers)
        command_id = command.command_id  # type: ignore[attr-defined]  # every control command has one
        return view.json({"accepted": event_type, "command_id": command_id, "ce_id": envelope.ce_id,
                          "command": command.to_dict()}, status=202)

    for route, event_type in ADMIN_COMMANDS.items():
        _admin_page(app, route, event_type, publish)

    def readable(request: Request) -> bool:
        if not settings.web_token:
            return True
        given = request.headers.get("Authorization", "").encode()
        return any(hmac.compare_digest(given, f"Bearer {token}".encode())
                   for token in (settings.web_token, settings.admin_token) if token)

    @app.page("/control/background")
    class BackgroundView(View):
        async def get(self, request: Request) -> Response:
            if not readable(request):
                return self.json({"error": "missing or wrong bearer token (see REGEN_WEB_TOKEN)"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="regen"'})
            return self.json(watch.describe())


def _admin_page(app, route: str, event_type: str, publish) -> None:
    class AdminCommandView(View):
        async def post(self, request: Request) -> Response:
            return await publish(self, request, event_type)

    AdminCommandView.__name__ = AdminCommandView.__qualname__ = f"Admin{event_type}View"
    app.page(f"/admin/{route}")(AdminCommandView)
