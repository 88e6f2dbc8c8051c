"""Post-processing of an image model's answer into a variant, in a render process.

The worker stores the model's answer (the image bytes it returned, unread)
under ``<image store>/generated/answers/``, named by what was asked for
(target, revision, generator, prompt, parameters), so every variant of one
target revision is made from the same image, and a variant added later or a
replay needs no second call. The render reads that answer exactly as it
reads any source: opened once below its root, a regular file within
REGEN_MAX_SOURCE_BYTES, decoded only by the REGEN_IMAGE_FORMATS plugins,
every decoded pixel within REGEN_MAX_SOURCE_PIXELS (imaging/source.py,
imaging/thumbnails.py). Outputs are named by the answer's sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from regen.imaging.errors import ImagingError
from regen.imaging.limits import Limits
from regen.imaging.render import RenderOutcome, existing_output
from regen.imaging.source import OpenFile, open_source
from regen.imaging.store import write_atomically
from regen.imaging.thumbnails import encode, thumbnail_image
from regen.imaging.variants import parse_variant

# The answers' folder below the image store (store uris of answers start with it).
ANSWERS_FOLDER = "generated/answers"


def answers_root(store: Path) -> Path:
    return store / ANSWERS_FOLDER


def answer_key(target_id: str, revision: int, generator: str, prompt: str, parameters: dict[str, Any]) -> str:
    """Names the answer to one question: the same question (a redelivery, a
    second variant) finds it, a different prompt under a forged job cannot."""
    asked = orjson.dumps([target_id, revision, generator, prompt, parameters], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(asked).hexdigest()


def answer_uri(key: str) -> str:
    """The answer's path below ``answers_root``."""
    return f"{key[:2]}/{key}"


def generated_path(store: Path, image_sha256: str, variant_name: str) -> Path:
    return store / "generated" / image_sha256[:2] / image_sha256 / variant_name


@dataclass(frozen=True)
class GeneratedTask:
    answer_uri: str  # below answers_root
    answers_root: Path
    variant: str
    image_store: Path
    limits: Limits = Limits()
    force: bool = False
    # A worker's stored answer that proves undecodable is removed (asking
    # again calls the model); a file a person named offline never is.
    forget_bad_answer: bool = True
    preset: str = ""  # the variant's definition if it names a preset (REGEN_PRESETS)


def run_generated_task(task: GeneratedTask) -> RenderOutcome:
    """The answer, checked like any source, resized into the variant and
    written atomically to a path named by the answer's content."""
    started = time.perf_counter()
    variant = parse_variant(task.variant, task.preset)
    with open_source(task.answer_uri, (task.answers_root,), task.limits) as source:
        assert isinstance(source, OpenFile)  # folders are refused without allow_folder
        data = source.read_all()
    answer_sha = hashlib.sha256(data).hexdigest()
    out = generated_path(task.image_store, answer_sha, variant.file_name)
    if not task.force:
        existing = existing_output(out, started)
        if existing is not None:
            return existing
    try:
        image = encode(thumbnail_image(data, variant, task.limits, "the model's answer"), variant)
    except ImagingError as e:
        if e.permanent and task.forget_bad_answer:
            # Garbage stays garbage: forget it, so asking again (a forced
            # request) calls the model instead of reading it once more.
            with contextlib.suppress(OSError):
                (task.answers_root / task.answer_uri).unlink()
        raise
    write_atomically(out, image.data)
    return RenderOutcome(path=out, sha256=hashlib.sha256(image.data).hexdigest(), width=image.width,
                         height=image.height, bytes=len(image.data),
                         render_ms=(time.perf_counter() - started) * 1000, cache_hit=False)
