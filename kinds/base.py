"""What a kind of image is: one interface every kind implements, once.

A kind says which source events it follows and how they fold into the
state that decides its target's wanted revision; how a target is planned
into a render job and when a job is superseded; the pure, picklable task a
render process runs; how a completion folds back; what replay and repair
enumerate; and its offline ``regen render``. Everything here is pure: state
in, state out, with the settings and the time passed in. Agents, replay,
repair, rebuild, the CLI and the HTTP views iterate the registry
(``regen.kinds``) and never branch on a kind's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from regen.schemas.events import Event, ImageFailed, ImageGenerated, Target
from regen.schemas.jobs import Lane, RenderJob
from regen.settings import Settings

State = TypeVar("State")
Schedule = Literal["at once", "when idle"]
Completion = ImageGenerated | ImageFailed
# The function a render process runs and its picklable argument.
RenderCall = tuple[Callable[[Any], Any], Any]


@dataclass(frozen=True)
class OfflineOption:
    """One option of ``regen render KIND`` (the CLI turns it into a click option)."""

    name: str  # the option as typed, e.g. "--start"
    type: type
    help: str
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class RecordedOutput:
    """An output the projections record for a target (replay and repair)."""

    target: Target
    variant: str
    output: dict  # uri, sha256, width, height, bytes


@dataclass(frozen=True)
class UnrenderedOutput:
    """A standing variant of a target whose wanted revision has no output
    (repair asks for it): "not rendered" (never, or not yet) or "failed"."""

    target: Target
    variant: str
    problem: Literal["not rendered", "failed"]


class GatherFailed(Exception):
    """``gather_input`` could not get what the render needs. ``permanent``:
    no retry can help (the service refused the request); otherwise the job
    is retried, not before ``retry_after`` seconds if the service said so.
    ``timeout`` marks a call abandoned at its time limit (its job fails with
    reason "timeout" once attempts run out)."""

    def __init__(self, code: str, message: str, *, permanent: bool, retry_after: float | None = None,
                 timeout: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.permanent = code, message, permanent
        self.retry_after, self.timeout = retry_after, timeout


class Kind(ABC, Generic[State]):
    """One kind of derived image. Subclasses set the class attributes and
    implement the abstract methods; the defaults suit a kind whose state
    needs no update while its jobs are queued or running."""

    # Target.kind (listed in schemas/json/TargetKind.json), and the word in
    # `regen get NAME` and `regen render NAME`.
    name: ClassVar[str]
    table: ClassVar[str]  # the table holding its targets' state, keyed by target id
    noun: ClassVar[str]  # what a target id names, for messages: "asset"
    never_known: ClassVar[str]  # why an unknown target is unknown: "has never been imported"
    source_events: ClassVar[tuple[type[Event], ...]]  # the events whose fold decides the wanted revision
    # "at once": standing variants are queued as the source event is folded
    # (imports); "when idle": once nobody has changed the source for
    # REGEN_IDLE_DELAY (a hundred quick boundary edits give one render).
    schedule: ClassVar[Schedule]
    # True for a kind whose render first waits on a service outside regen
    # (gather_input; an image model, up to a minute): its jobs travel on a
    # lane of their own, render.generation, so they never hold up the others.
    calls_out: ClassVar[bool] = False
    # The top folder of the image store its outputs are written below
    # ("thumbnails"): what store size is reported per kind by (agents/lifecycle.py).
    store_folder: ClassVar[str]

    # --- state ---------------------------------------------------------------

    @abstractmethod
    def read(self, row: dict | None) -> State | None:
        """A table row as the kind's state record (None: no row, or malformed)."""

    @abstractmethod
    def source_key(self, event: Event) -> str:
        """The target id a source event is about (also its Kafka key)."""

    @abstractmethod
    def fold_source(self, state: State | None, event: Event, at: str) -> State:
        """A source event into the state; the same object back if nothing changed."""

    @abstractmethod
    def revision(self, state: State) -> int:
        """The revision the target should be rendered at now."""

    @abstractmethod
    def standing_variants(self, settings: Settings) -> tuple[str, ...]:
        """Variants rendered without being asked for (on import, when idle)."""

    def needs_render(self, state: State, settings: Settings) -> bool:
        """Whether a "when idle" target waits for a render of its revision
        (of any of its standing variants, which the settings name)."""
        return False

    # --- planning ------------------------------------------------------------

    @abstractmethod
    def plan(self, state: State, variant: str, lane: Lane, at: str, *,
             request_ids: tuple[str, ...] = (), force: bool = False) -> RenderJob:
        """The job rendering ``variant`` of the target at its current revision."""

    def superseded(self, state: State | None, job: RenderJob) -> bool:
        """A job for an older revision than the one wanted now is never rendered."""
        return state is not None and self.revision(state) > job.revision

    # --- rendering -------------------------------------------------------------

    @abstractmethod
    def render_call(self, job: RenderJob, settings: Settings) -> RenderCall:
        """The function and picklable task a render process runs for ``job``."""

    async def gather_input(self, job: RenderJob, settings: Settings, services: Any) -> None:
        """I/O outside regen a render needs before its task can run, awaited
        on the worker's event loop (never CPU work): an image model's answer,
        left where ``render_call``'s task reads it. ``services`` is what the
        worker lends for it (agents/generation.py). Raises GatherFailed.
        Default: nothing to gather."""
        return None

    # --- completions -------------------------------------------------------------

    def queued(self, state: State, job: RenderJob, at: str) -> State:
        return state

    @abstractmethod
    def completed(self, state: State, event: Completion) -> State:
        """An ImageGenerated or ImageFailed folded into the target's state."""

    def announcements(self, before: State | None, after: State) -> list[Event]:
        """Events a change of state tells other partitions (a composite's
        dirty flag, re-keyed by video). Default: none."""
        return []

    # --- replay and repair -------------------------------------------------------

    @abstractmethod
    def current_output(self, state: State, variant: str) -> dict | None:
        """The output recorded for the target's current revision, or None."""

    @abstractmethod
    def recorded_outputs(self, target_id: str, state: State, settings: Settings) -> Iterable[RecordedOutput]:
        """Every finished output the state records (what repair checks)."""

    def held_outputs(self, target_id: str, state: State, settings: Settings) -> Iterable[tuple[str, str]]:
        """(slot, store uri) of every store file the state still points at,
        current or not: what keeps a file from garbage collection. A slot is
        a variant, or another name for a file of the kind's own (a model's
        answer). Default: the recorded outputs."""
        for recorded in self.recorded_outputs(target_id, state, settings):
            uri = recorded.output.get("uri")
            if isinstance(uri, str):
                yield recorded.variant, uri

    def unrendered_outputs(self, target_id: str, state: State, settings: Settings) -> Iterable[UnrenderedOutput]:
        """Standing variants whose wanted revision has no completed output
        (what repair asks for besides damaged files). Default: none, for a
        kind whose missing renders another path finds (a replay)."""
        return ()

    def replay_variants(self, settings: Settings, only: tuple[str, ...]) -> tuple[str, ...]:
        """What a replay asks for: the standing variants, or of ``only`` the
        ones this kind renders by itself."""
        standing = self.standing_variants(settings)
        return tuple(v for v in only if v in standing) if only else standing

    def scope(self, state: State) -> dict[str, str | None]:
        """What repair can narrow by: {"batch": ..., "video": ...}."""
        return {}

    def group(self, state: State) -> str | None:
        """The group whose progress the target counts in (a case of
        generated images), or None."""
        return None

    # --- samples -------------------------------------------------------------------

    @abstractmethod
    def example_source(self, media: Path, target_id: str, revision: int) -> Event:
        """Write sample media below ``media`` and return the source event of
        target ``target_id`` at ``revision`` (each revision other content):
        what the contract test every kind runs (tests/unit/test_kind_contract.py)
        feeds through plan, render, fold, replay and repair."""

    # --- offline -------------------------------------------------------------------

    offline_help: ClassVar[str] = ""
    offline_options: ClassVar[tuple[OfflineOption, ...]] = ()

    @abstractmethod
    def offline_call(self, source: Path, store: Path, variant: str, settings: Settings,
                     options: dict[str, Any]) -> RenderCall:
        """``regen render NAME SOURCE``: the worker's own task function, for a
        file a person names (its folder is the only media root)."""
