"""Images an external model generates from a prompt.

Source: GenerationRequested (target id, revision, generator, prompt,
parameters, optional group id), folded into the ``generations`` table: a
higher revision supersedes the older prompt (projections/generations.py).
Standing variants (REGEN_GENERATED_VARIANTS) are queued as the request is
folded. Before its render a job gathers the model's answer on the worker's
event loop (``gather_input``: an HTTP call of up to a minute, rate limited
per generator, agents/generation.py); the render process then checks the
answer like any source and resizes it into the variant
(imaging/generated.py). Jobs travel on the render.generation lane
(``calls_out``), several in flight at once, so a slow model never holds up
thumbnails or requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from regen.kinds.base import Completion, GatherFailed, Kind, RecordedOutput, RenderCall
from regen.projections import generations, variant_folds
from regen.projections.generations import GenerationState
from regen.schemas.events import Event, GenerationRequested, ImageGenerated, Target
from regen.schemas.jobs import Lane, RenderJob, job_id_for
from regen.settings import Settings


class Generated(Kind[GenerationState]):
    name = "generated"
    table = "generations"
    noun = "generation target"
    never_known = "has never been asked for by a GenerationRequested event"
    source_events = (GenerationRequested,)
    store_folder = "generated"
    schedule = "at once"
    calls_out = True
    offline_help = ("Post-process SOURCE, an image as a model returned it, into a variant exactly as a worker "
                    "does with a model's answer (the same checks and resize).")
    offline_options = ()

    def read(self, row: dict | None) -> GenerationState | None:
        return GenerationState.from_dict(row)

    def source_key(self, event: Event) -> str:
        assert isinstance(event, GenerationRequested)
        return event.target_id

    def fold_source(self, state: GenerationState | None, event: Event, at: str) -> GenerationState:
        assert isinstance(event, GenerationRequested)
        return generations.generation_requested(state, event, at)

    def revision(self, state: GenerationState) -> int:
        return state.revision

    def standing_variants(self, settings: Settings) -> tuple[str, ...]:
        return settings.generated_variants or settings.variants[:1]

    def replay_variants(self, settings: Settings, only: tuple[str, ...]) -> tuple[str, ...]:
        return only or self.standing_variants(settings)  # any configured variant: made from the stored answer

    def plan(self, state: GenerationState, variant: str, lane: Lane, at: str, *,
             request_ids: tuple[str, ...] = (), force: bool = False) -> RenderJob:
        from regen.imaging.generated import answer_key, answer_uri

        target = Target(self.name, state.target_id)
        key = answer_key(state.target_id, state.revision, state.generator, state.prompt, state.parameters)
        return RenderJob(
            job_id=job_id_for(target, variant, state.revision), target=target, variant=variant,
            revision=state.revision, lane=lane, source_uri=answer_uri(key), source_sha256="",
            media_type="image", enqueued_at=at, force=force, request_ids=request_ids,
            detail={"generator": state.generator, "prompt": state.prompt, "parameters": state.parameters,
                    "group_id": state.group_id},
        )

    async def gather_input(self, job: RenderJob, settings: Settings, services: Any) -> None:
        await services.answer(job, ask_of(job))

    def render_call(self, job: RenderJob, settings: Settings) -> RenderCall:
        from regen.imaging.generated import GeneratedTask, answer_key, answer_uri, answers_root, run_generated_task

        ask = ask_of(job)
        key = answer_key(job.target.id, job.revision, ask.generator, ask.prompt, ask.parameters)
        return run_generated_task, GeneratedTask(
            answer_uri=answer_uri(key), answers_root=answers_root(Path(settings.image_store)), variant=job.variant,
            image_store=Path(settings.image_store), limits=settings.limits(), force=job.force,
            preset=settings.preset(job.variant))

    def queued(self, state: GenerationState, job: RenderJob, at: str) -> GenerationState:
        return variant_folds.variant_queued(state, job, at)

    def completed(self, state: GenerationState, event: Completion) -> GenerationState:
        if isinstance(event, ImageGenerated):
            return variant_folds.variant_generated(state, event)
        return variant_folds.variant_failed(state, event)

    def current_output(self, state: GenerationState, variant: str) -> dict | None:
        entry = state.variant(variant)
        if entry is None or entry.status != "completed" or entry.revision != state.revision:
            return None
        return entry.output

    def recorded_outputs(self, target_id: str, state: GenerationState,
                         settings: Settings) -> Iterable[RecordedOutput]:
        for variant, entry in sorted(state.variants.items()):
            if entry.get("status") == "completed" and entry.get("output"):
                yield RecordedOutput(Target(self.name, target_id), variant, entry["output"])

    def held_outputs(self, target_id: str, state: GenerationState,
                     settings: Settings) -> Iterable[tuple[str, str]]:
        """The variants' images, and the model's answer to the current
        revision's prompt (every variant, one added later and a replay are
        made from it); an older revision's answer is no longer held."""
        from regen.imaging.generated import ANSWERS_FOLDER, answer_key, answer_uri

        yield from variant_folds.held_variant_outputs(state)
        key = answer_key(state.target_id, state.revision, state.generator, state.prompt, state.parameters)
        yield "answer", f"{ANSWERS_FOLDER}/{answer_uri(key)}"

    def scope(self, state: GenerationState) -> dict[str, str | None]:
        return {"group": state.group_id}

    def group(self, state: GenerationState) -> str | None:
        return state.group_id

    def offline_call(self, source: Path, store: Path, variant: str, settings: Settings,
                     options: dict[str, Any]) -> RenderCall:
        from regen.imaging.generated import GeneratedTask, run_generated_task

        return run_generated_task, GeneratedTask(answer_uri=source.name, answers_root=source.parent,
                                                 variant=variant, image_store=store, limits=settings.limits(),
                                                 force=True, forget_bad_answer=False,
                                                 preset=settings.preset(variant))

    def example_source(self, media: Path, target_id: str, revision: int) -> Event:
        # Nothing to write: the image comes from the generator named
        # "example", which the contract test points at cli/stand_in_model.py.
        return GenerationRequested(target_id=target_id, revision=revision, generator="example",
                                   prompt=f"a lighthouse at dusk, take {revision}", parameters={"width": 320,
                                                                                               "height": 200})


class Ask:
    """What a job asks its generator, read back from the job's detail (a
    record from a topic: checked, never trusted)."""

    __slots__ = ("generator", "prompt", "parameters")

    def __init__(self, generator: str, prompt: str, parameters: dict[str, Any]) -> None:
        self.generator, self.prompt, self.parameters = generator, prompt, parameters


MAX_PROMPT_CHARS, MAX_PARAMETERS, MAX_PARAMETER_CHARS = 8000, 64, 1000


def ask_of(job: RenderJob) -> Ask:
    """The generator, prompt and parameters a job carries, within the
    bounds GenerationRequested's schema sets; GatherFailed (permanent) if not."""
    detail = job.detail if isinstance(job.detail, dict) else {}
    generator, prompt, parameters = detail.get("generator"), detail.get("prompt"), detail.get("parameters", {})

    def bad(why: str) -> GatherFailed:
        return GatherFailed("bad_job", f"job {job.job_id}: {why}", permanent=True)

    if not isinstance(generator, str) or not 1 <= len(generator) <= 64:
        raise bad("no generator name in its detail")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= MAX_PROMPT_CHARS:
        raise bad(f"no prompt of 1 to {MAX_PROMPT_CHARS} characters in its detail")
    if not isinstance(parameters, dict) or len(parameters) > MAX_PARAMETERS:
        raise bad(f"parameters must be an object of at most {MAX_PARAMETERS} entries")
    for name, value in parameters.items():
        if not isinstance(name, str) or len(name) > 64:
            raise bad("a parameter name is not a string of at most 64 characters")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise bad(f"parameter {name!r} is not a string, number, boolean or null")
        if isinstance(value, str) and len(value) > MAX_PARAMETER_CHARS:
            raise bad(f"parameter {name!r} is over {MAX_PARAMETER_CHARS} characters")
    return Ask(generator, prompt, parameters)
