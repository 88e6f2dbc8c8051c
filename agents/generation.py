"""What a worker lends the generated kind for its model calls (``gather_input``).

One HTTP session for all generators; per generator a call window (its share
of the rate limit, agents/call_window.py); one call per answer however many
variant jobs wait for it; the answer stored atomically in the image store
before any render reads it; a timeout that cancels the call; metrics per
generator and outcome.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import aiohttp

from regen.agents.call_window import CallWindow
from regen.agents.http_generator import CallFailed, Outcome, generate
from regen.agents.metrics import Metrics
from regen.generator_config import GeneratorConfig
from regen.imaging.generated import answer_key, answer_uri, answers_root
from regen.imaging.store import write_atomically
from regen.kinds.base import GatherFailed
from regen.schemas.jobs import RenderJob
from regen.settings import Settings

log = logging.getLogger(__name__)

# How often a call waiting for its turn looks again: a share can grow or a
# Retry-After end meanwhile.
TURN_POLL_S = 1.0


class GenerationServices:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.windows = {g.name: CallWindow(g.calls_per_minute, g.rate_window_s) for g in settings.generators}
        self._session: aiohttp.ClientSession | None = None
        self._asking: dict[str, asyncio.Future[None]] = {}  # answer key -> the call under way

    # --- the rate limit's share --------------------------------------------------

    def set_share(self, owned: int, total: int) -> None:
        """This worker now reads ``owned`` of the generation lane's ``total`` partitions."""
        now = time.monotonic()
        for window in self.windows.values():
            window.set_share(owned, total, now)

    # --- gather_input --------------------------------------------------------------

    async def answer(self, job: RenderJob, ask: Any) -> None:
        """Make sure the model's answer to ``ask`` is in the store; one call
        however many variant jobs of the target ask at once."""
        key = answer_key(job.target.id, job.revision, ask.generator, ask.prompt, ask.parameters)
        path = answers_root(Path(self.settings.image_store)) / answer_uri(key)
        under_way = self._asking.get(key)
        if under_way is not None:
            return await asyncio.shield(under_way)
        # Registered before the first await: a job arriving meanwhile waits for this one.
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._asking[key] = future
        try:
            if not await asyncio.to_thread(path.is_file):  # else asked before: all variants from one image
                data = await self._call(job, ask)
                await asyncio.to_thread(write_atomically, path, data)
            future.set_result(None)
        except Exception as e:
            future.set_exception(e)
            future.exception()  # retrieved: nobody else may be waiting for it
            raise
        except BaseException:  # cancelled: so are the jobs waiting for this call
            future.cancel()
            raise
        finally:
            del self._asking[key]

    async def _call(self, job: RenderJob, ask: Any) -> bytes:
        config = self.settings.generator(ask.generator)
        if config is None:
            known = ", ".join(g.name for g in self.settings.generators) or "none"
            raise GatherFailed("unknown_generator", f"generator {ask.generator!r} is not configured in "
                               f"REGEN_GENERATORS (configured: {known})", permanent=True)
        window = self.windows[config.name]
        while (wait := window.take(time.monotonic())) > 0:
            await asyncio.sleep(min(wait, TURN_POLL_S))
        started = time.monotonic()
        outcome = Outcome.OK
        try:
            async with asyncio.timeout(config.timeout_s):
                return await generate(self._client(), config, ask.prompt, ask.parameters, _secret(config))
        except TimeoutError:
            outcome = Outcome.TIMEOUT
            raise CallFailed(outcome, "generator_timeout", f"generator {config.name!r} did not answer within "
                             f"{config.timeout_s:g} s (call abandoned)", permanent=False, timeout=True) from None
        except CallFailed as e:
            outcome = e.outcome
            if e.retry_after is not None:
                window.hold_until(time.monotonic() + e.retry_after)
            raise
        except BaseException:
            outcome = "cancelled"
            raise
        finally:
            self._count(config, outcome, time.monotonic() - started)
            log.info("generator %s for %s: %s in %.2f s", config.name, job.job_id, outcome,
                     time.monotonic() - started)

    def _count(self, config: GeneratorConfig, outcome: str, seconds: float) -> None:
        self.metrics.generator_calls.labels(config.name, outcome).inc()
        self.metrics.generator_seconds.labels(config.name, outcome).observe(seconds)
        self.metrics.generator_cost.labels(config.name, outcome).inc(config.cost_per_call)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # force_close: a connection is never kept for a next call, so an
            # abandoned call (timeout) leaves no socket behind.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                                  timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _secret(config: GeneratorConfig) -> str | None:
    """Read where it is used, never stored in settings or logged."""
    return os.environ.get(config.auth_env) if config.auth_env else None
