"""The contract every registered kind keeps, run for each kind in memory (no
broker): its source event plans a job, the job renders in the pool's task
function, the completion folds back, a replay skips the intact output,
repair finds it once deleted, and a newer revision supersedes the older job.
A new kind registered in regen.kinds runs this suite with nothing added.

A kind that calls out (``calls_out``: an image model) gathers its input
first, from a real local model server (cli/stand_in_model.py) configured as
the generator named "example", through the worker's own services."""

from __future__ import annotations

import asyncio
import json
import pickle
from functools import partial
from importlib import resources
from pathlib import Path

import pytest

from regen.cli.stand_in_model import ModelServer
from regen.imaging.store import output_problem
from regen.kinds import KINDS, kinds_following
from regen.kinds.base import Kind
from regen.projections.planning import generated_event
from regen.projections.repair import find_damage
from regen.projections.replay import ReplayItem, intact_in_store, replay_items
from regen.schemas.events import ImageFailed, Target
from regen.settings import Settings

AT = "2026-01-01T00:00:00Z"


@pytest.fixture(params=sorted(KINDS), ids=str)
def kind(request) -> Kind:
    return KINDS[request.param]


@pytest.fixture(scope="module")
def model_server():
    with ModelServer() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, model_server: ModelServer) -> Settings:
    media = tmp_path / "media"
    media.mkdir()
    generators = json.dumps(model_server.generator("example"))
    return Settings.from_env({"REGEN_GENERATORS": generators}, media_roots=(media,), image_store=tmp_path / "store",
                             state_dir=tmp_path / "state", render_processes=1)


def gather(kind: Kind, job, settings: Settings) -> None:
    """What the render agent awaits before a render (agents/render.py)."""
    if not kind.calls_out:
        return

    async def run() -> None:
        from regen.agents.generation import GenerationServices
        from regen.agents.metrics import Metrics

        services = GenerationServices(settings, Metrics())
        services.set_share(1, 1)
        try:
            await kind.gather_input(job, settings, services)
        finally:
            await services.close()

    asyncio.run(run())


def rows_of(kind: Kind, target_id: str, state) -> dict[str, dict[str, dict]]:
    return {kind.table: {target_id: state.to_dict()}}


def test_plan_render_fold_replay_repair_supersede(kind: Kind, settings: Settings):
    media, store = settings.media_roots[0], settings.image_store
    check = partial(output_problem, store)
    event = kind.example_source(media, "t1", revision=1)
    assert kind in kinds_following(event), "a source event is followed by the kind that says so"
    assert kind.source_key(event) == "t1"

    # Source event -> state at the wanted revision; the same event again changes nothing.
    state = kind.fold_source(None, event, AT)
    assert kind.revision(state) == 1
    assert kind.fold_source(state, event, AT) == state

    # Plan: deterministic job for the target's current revision.
    variant = kind.standing_variants(settings)[0]
    job = kind.plan(state, variant, "background", AT)
    assert job == kind.plan(state, variant, "background", AT)
    assert (job.target, job.variant, job.revision) == (Target(kind.name, "t1"), variant, 1)
    assert not kind.superseded(state, job)

    # Render: a picklable task (it crosses to a render process) whose output is in the store.
    gather(kind, job, settings)
    fn, task = pickle.loads(pickle.dumps(kind.render_call(job, settings)))
    outcome = fn(task)
    assert outcome.path.is_file() and outcome.path.is_relative_to(store)
    completion = generated_event(job, outcome, store, 1, AT)

    # Fold the completion back: the current revision's output is recorded, idempotently.
    done = kind.completed(kind.queued(state, job, AT), completion)
    assert kind.completed(done, completion) == done
    output = kind.current_output(done, variant)
    assert output is not None and output["sha256"] == completion.sha256 and output["uri"] == completion.uri

    # Storage lifecycle: the output lies in the kind's folder, and the state
    # holds it, and every other file it holds is in the store (a model's answer).
    assert completion.uri.split("/")[0] == kind.store_folder
    held = list(kind.held_outputs("t1", done, settings))
    assert (variant, completion.uri) in held
    assert all((store / uri).is_file() and uri.split("/")[0] == kind.store_folder for _, uri in held), held

    # Replay asks for the target, and skips it while its output is intact.
    item = ReplayItem(Target(kind.name, "t1"), variant)
    assert item in replay_items([event], settings)
    assert intact_in_store(item, rows_of(kind, "t1", done), check)
    assert find_damage(rows_of(kind, "t1", done), check, settings) == []

    # Repair finds it once the file is gone; replay no longer skips it.
    outcome.path.unlink()
    damage = find_damage(rows_of(kind, "t1", done), check, settings)
    assert [(d.target, d.variant, d.problem) for d in damage] == [(item.target, variant, "missing")]
    assert not intact_in_store(item, rows_of(kind, "t1", done), check)

    # A newer revision supersedes the older job, and its own job is current.
    newer = kind.fold_source(done, kind.example_source(media, "t1", revision=2), AT)
    assert kind.revision(newer) == 2
    assert kind.superseded(newer, job)
    assert not kind.superseded(newer, kind.plan(newer, variant, "background", AT))
    assert kind.current_output(newer, variant) is None, "the old output is not the current revision's"
    # A late completion of the old revision does not make it current again.
    assert kind.current_output(kind.completed(newer, completion), variant) is None


def test_a_failure_folds_back_without_an_output(kind: Kind, settings: Settings):
    state = kind.fold_source(None, kind.example_source(settings.media_roots[0], "t2", revision=1), AT)
    variant = kind.standing_variants(settings)[0]
    job = kind.plan(state, variant, "background", AT)
    failed = ImageFailed(target=job.target, variant=variant, revision=1, job_id=job.job_id, reason="permanent",
                         error_code="corrupt", error="broken", attempts=1, failed_at=AT)
    after = kind.completed(state, failed)
    assert kind.current_output(after, variant) is None
    assert kind.completed(after, failed) == after


def test_the_json_schema_names_exactly_the_registered_kinds():
    """TargetKind.json is the one list of kinds publishers validate against;
    the events refer to it, and the records read it."""
    from regen.schemas.events import TARGET_KINDS

    folder = resources.files("regen.schemas").joinpath("json")
    assert sorted(json.loads(folder.joinpath("TargetKind.json").read_text())["enum"]) == sorted(KINDS)
    assert sorted(TARGET_KINDS) == sorted(KINDS)
    for name in ("ImageRequested", "ImageGenerated", "ImageFailed"):
        schema = json.loads(folder.joinpath(f"{name}.json").read_text())
        assert schema["$defs"]["target"]["properties"]["kind"]["$ref"] == "TargetKind.json", name


def test_a_kind_outside_the_list_is_refused_by_schema_and_record():
    import orjson

    from regen.schemas.events import ImageRequested
    from regen.streams.codec import decode
    from regen.streams.exceptions import PoisonEvent

    body = {"target": {"kind": "hologram", "id": "a1"}, "variant": "h400.jpg", "request_id": "r1"}
    with pytest.raises(PoisonEvent, match="hologram"):
        decode(orjson.dumps(body), [], (ImageRequested,))  # JSON Schema, through TargetKind.json
    with pytest.raises(PoisonEvent, match="hologram"):
        decode(orjson.dumps(body), [], (ImageRequested,), validate=False)  # the typed record alone
