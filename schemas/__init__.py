"""Event contracts: Python records here, JSON Schema files in ``schemas/json``."""

from regen.schemas.events import (  # noqa: F401
    EVENT_TYPES,
    AssetImported,
    BoundaryChanged,
    ImageFailed,
    ImageGenerated,
    ImageRequested,
    Target,
)
