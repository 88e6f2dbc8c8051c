"""Print, as JSON, what the TypeScript generator cannot read from the JSON
Schema files: each public event's CloudEvents type and topic, and whether
publishers outside regen send it (a source topic) or only read it.

Run by scripts/generate.mjs with regen's Python; regen's own topic table
(streams/topics.py) is the one source, so the TypeScript client cannot drift
from it.
"""

from __future__ import annotations

import json
import sys

from regen.schemas.events import EVENT_TYPES
from regen.settings import Settings
from regen.streams.codec import WRITTEN_BY_REGEN
from regen.streams.topics import DEADLETTER, TOPIC_FOR_EVENT


def routing() -> dict:
    defaults = Settings()
    events = {}
    for name, cls in sorted(EVENT_TYPES.items()):
        spec = TOPIC_FOR_EVENT[cls]
        events[name] = {
            "ce_type": cls.ce_type,
            "topic": spec.suffix,
            "topic_description": spec.description,
            "published_by_others": cls not in WRITTEN_BY_REGEN,
        }
    return {
        "topic_prefix": defaults.topic_prefix,
        "partitions": defaults.partitions,
        "deadletter": {"topic": DEADLETTER.suffix, "topic_description": DEADLETTER.description},
        "events": events,
    }


if __name__ == "__main__":
    json.dump(routing(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
