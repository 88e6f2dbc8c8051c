"""Prometheus metrics of one worker, served at /metrics.

Counters are bumped where things happen (intake, render, dead letters);
gauges that describe state — queue depth per lane, pending dirty
annotations — are read from the consumer and the tables when scraped, so
they cannot drift from what the worker holds.

Every worker exposes what it owns and did, and nothing else: its own
counters, the lag of the lane partitions it reads, the dirty annotations in
its partitions. So a sum across workers in Prometheus counts everything
once. No ``instance`` label is added here (Prometheus adds the scrape
target), and no label takes a value per asset, job or batch.

A gauge read at scrape time can fail while partitions move (a table or a
consumer in the middle of a reassignment). That gauge is then left out of
this scrape and counted in ``regen_metrics_read_errors_total``; the rest of
the scrape, counters included, still answers. A failing gauge must not turn
the whole scrape into a 500, which Prometheus records as the worker being
down, with every counter missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from regen.projections.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

# Render times run from a few ms (a small JPEG) to tens of seconds (a long
# composite): buckets from 5 ms to 60 s.
RENDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        # One registry per worker, not the process-wide default: tests and
        # benchmarks run several apps in one interpreter.
        self.registry = CollectorRegistry()
        self.events_in = Counter("regen_events_in", "Events consumed, by type", ["type"], registry=self.registry)
        self.renders = Counter("regen_renders", "Finished renders, by outcome "
                               "(generated, cache_hit, failed_permanent, failed_exhausted, failed_timeout)",
                               ["outcome"], registry=self.registry)
        self.render_seconds = Histogram("regen_render_seconds", "Time in a render process per job, by kind",
                                        ["kind"], buckets=RENDER_BUCKETS, registry=self.registry)
        self.retries = Counter("regen_retries", "Render attempts sent to the retry topic", registry=self.registry)
        self.deadletters = Counter("regen_deadletters", "Events sent to the dead-letter topic",
                                   registry=self.registry)
        self.timer_errors = Counter("regen_timer_errors", "Exceptions caught in a timer (it runs again at its "
                                    "next tick), by timer", ["timer"], registry=self.registry)
        self.requests_answered = Counter("regen_requests_answered", "Requests answered at once from a finished job",
                                         ["answer"], registry=self.registry)
        self.webhooks = Counter("regen_webhook_posts", "Webhook posts, by outcome (delivered, failed: after "
                                "its retries)", ["outcome"], registry=self.registry)
        self.stuck_jobs = Gauge("regen_stuck_jobs", "Unfinished jobs in this worker's partitions with no progress "
                                "for REGEN_STUCK_AFTER", registry=self.registry)
        self.stuck_groups = Gauge("regen_stuck_groups", "Unfinished groups in this worker's partitions with no "
                                  "member changing for REGEN_GROUP_STUCK_AFTER", registry=self.registry)
        # Per reader: "faust" (Faust's consumer) or a lane (interactive, background, generation, request-intake).
        self.stalled_partitions = Gauge("regen_stalled_partitions", "Partitions this worker reads with work waiting "
                                        "and no commit for REGEN_STALL_AFTER (agents/stall_watch.py), by reader",
                                        ["reader"], registry=self.registry)
        # Per generator (a handful, configured) and outcome: ok, timeout,
        # rate_limited, server_error, refused, unreachable, bad_response, cancelled.
        self.generator_calls = Counter("regen_generator_calls", "Calls to an image model, by generator and outcome",
                                       ["generator", "outcome"], registry=self.registry)
        self.generator_seconds = Histogram("regen_generator_seconds", "Latency of calls to an image model, by "
                                           "generator and outcome", ["generator", "outcome"],
                                           buckets=RENDER_BUCKETS, registry=self.registry)
        self.generator_cost = Counter("regen_generator_cost", "Cost of calls to an image model (cost_per_call "
                                      "of REGEN_GENERATORS for each call), by generator and outcome",
                                      ["generator", "outcome"], registry=self.registry)
        self.read_errors = Counter("regen_metrics_read_errors", "Scrapes that left a gauge out because reading it "
                                   "failed, by gauge", ["gauge"], registry=self.registry)

    def watch(self, queue_depth: Callable[[], Iterable[tuple[str, int]]],
              pending_dirty: Callable[[], int]) -> None:
        """Gauges computed at scrape time."""
        self.registry.register(_StateCollector(queue_depth, pending_dirty, self.read_errors))

    def watch_sql_read_model(self, projector: Any) -> None:
        """The worker's SQL projector (agents/sql_projector.py), read when scraped."""
        self.registry.register(_SqlReadModelCollector(projector, self.read_errors))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    def __init__(self, queue_depth, pending_dirty, read_errors: Counter) -> None:
        self._queue_depth = queue_depth
        self._pending_dirty = pending_dirty
        self._read_errors = read_errors
        self._log = ThrottledLog(log)

    def describe(self):
        return []  # collected fresh every scrape; nothing to check at registration

    def collect(self):
        for name, read in (("regen_queue_depth", self._lane_depths), ("regen_pending_dirty_annotations",
                                                                       self._dirty)):
            try:
                family = read()
            except Exception:  # noqa: BLE001 - any failure: this gauge is left out, the scrape goes on
                self._read_errors.labels(name).inc()
                self._log.log(name, logging.WARNING, "metrics: reading %s failed; left out of this scrape", name,
                              exc_info=True)
                continue
            yield family

    def _lane_depths(self) -> GaugeMetricFamily:
        depth = GaugeMetricFamily("regen_queue_depth", "Jobs in a render lane not yet done (consumer lag "
                                  "of this worker's partitions plus jobs waiting for a render process)",
                                  labels=["lane"])
        for lane, value in self._queue_depth():
            depth.add_metric([lane], value)
        return depth

    def _dirty(self) -> GaugeMetricFamily:
        return GaugeMetricFamily("regen_pending_dirty_annotations",
                                 "Annotations whose composite is stale, in this worker's videos",
                                 value=self._pending_dirty())


class _SqlReadModelCollector:
    """How far this worker's SQL projector is behind, and what it applied.

    They describe the read model this worker writes: its own SQLite file by
    default, where every worker applies every record of the group (so these
    are not summed across workers), or a shared database, where each applies
    what the others have not (``skipped`` counts what they had)."""

    def __init__(self, projector: Any, read_errors: Counter) -> None:
        self._projector = projector
        self._read_errors = read_errors
        self._log = ThrottledLog(log)

    def describe(self):
        return []

    def collect(self):
        try:
            families = self._families()
        except Exception:  # noqa: BLE001 - as _StateCollector: left out, the scrape goes on
            self._read_errors.labels("regen_sql_read_model").inc()
            self._log.log("sql", logging.WARNING, "metrics: reading the SQL read model's figures failed; "
                          "left out of this scrape", exc_info=True)
            return
        yield from families

    def _families(self) -> list:
        stats = self._projector.stats
        behind = GaugeMetricFamily("regen_sql_read_model_behind", "Records of the read model's topics not yet "
                                   "applied by this worker's SQL projector", value=self._projector.behind())
        lags = list(stats.lags)
        lag = GaugeMetricFamily("regen_sql_read_model_lag_seconds", "For the last batch applied: seconds from "
                                "its oldest record's Kafka timestamp to its commit", value=lags[-1][1] if lags else 0.0)
        records = CounterMetricFamily("regen_sql_read_model_records", "Records read by this worker's SQL "
                                      "projector, by outcome (applied, skipped: another projector had, "
                                      "malformed)", labels=["outcome"])
        for outcome in ("applied", "skipped", "malformed"):
            records.add_metric([outcome], getattr(stats, outcome))
        return [behind, lag, records]
