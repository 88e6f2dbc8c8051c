"""The kinds of image regen renders, registered once.

Adding a kind: write one module with a ``Kind`` subclass (see
``regen.kinds.base`` and the two below), its source event's JSON Schema in
``schemas/json``, and register an instance here. Everything that plans,
renders, folds, replays, repairs or lists images iterates ``KINDS``.
"""

from __future__ import annotations

from regen.kinds.base import Kind
from regen.kinds.composite import Composite
from regen.kinds.generated import Generated
from regen.kinds.overlay import Overlay
from regen.kinds.thumbnail import Thumbnail
from regen.schemas.events import Event

KINDS: dict[str, Kind] = {kind.name: kind for kind in (Thumbnail(), Composite(), Overlay(), Generated())}


class UnknownKind(KeyError):
    pass


def kind_named(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(f"no kind of image named {name!r}; known: {', '.join(KINDS)}") from None


def kinds_following(event: Event) -> list[Kind]:
    """The kinds whose targets a source event changes."""
    return [kind for kind in KINDS.values() if isinstance(event, kind.source_events)]
