"""A worker's Prometheus metrics (agents/metrics.py): what one scrape holds,
and that a gauge which cannot be read does not fail the scrape."""

from __future__ import annotations

import logging

from prometheus_client.parser import text_string_to_metric_families

from regen.agents.metrics import Metrics
from regen.agents.sql_projector import ProjectorStats
from regen.projections.sql_store import Applied

# Every label regen's metrics may carry: each takes a handful of values, none per asset, job or batch.
BOUNDED_LABELS = {"type", "outcome", "kind", "lane", "timer", "answer", "gauge", "le"}


def scrape(metrics: Metrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}


def samples(families: dict, name: str) -> dict[tuple, float]:
    family = families[name.removesuffix("_total")]
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == name}


def busy_metrics() -> Metrics:
    metrics = Metrics()
    metrics.watch(lambda: [("interactive", 2), ("background", 40)], lambda: 3)
    metrics.events_in.labels("AssetImported").inc(5)
    metrics.renders.labels("generated").inc(4)
    metrics.render_seconds.labels("thumbnail").observe(0.2)
    return metrics


def test_a_scrape_holds_this_workers_counters_and_state_without_an_instance_label():
    families = scrape(busy_metrics())
    assert samples(families, "regen_renders_total") == {(("outcome", "generated"),): 4.0}
    assert samples(families, "regen_queue_depth") == {(("lane", "interactive"),): 2.0,
                                                      (("lane", "background"),): 40.0}
    assert samples(families, "regen_pending_dirty_annotations") == {(): 3.0}
    labels = {name for f in families.values() for s in f.samples for name in s.labels}
    # Prometheus adds instance (the scrape target) itself; a label per asset would grow without bound.
    assert labels <= BOUNDED_LABELS, labels - BOUNDED_LABELS


def test_a_gauge_that_cannot_be_read_is_left_out_and_the_scrape_still_answers(caplog):
    # As a lane's consumer does when asked about a partition in the middle of
    # a reassignment (aiokafka asserts the partition is assigned). Before,
    # the exception went through generate_latest and /metrics answered 500:
    # Prometheus saw the worker as down, every counter with it.
    def lane_moving():
        raise AssertionError("Partition is not assigned")

    metrics = Metrics()
    metrics.watch(lane_moving, lambda: 1)
    metrics.renders.labels("generated").inc()
    with caplog.at_level(logging.WARNING, logger="regen.agents.metrics"):
        families = scrape(metrics)
        families_again = scrape(metrics)
    assert "regen_queue_depth" not in families
    assert samples(families, "regen_pending_dirty_annotations") == {(): 1.0}
    assert samples(families, "regen_renders_total") == {(("outcome", "generated"),): 1.0}
    # Counted as it happens; the counter itself was already written out in the scrape that failed.
    assert samples(families_again, "regen_metrics_read_errors_total") == {(("gauge", "regen_queue_depth"),): 1.0}
    assert len([r for r in caplog.records if "regen_queue_depth" in r.getMessage()]) == 1, "logged once, not per scrape"


def test_each_worker_has_its_own_registry():
    one, two = busy_metrics(), Metrics()
    two.watch(lambda: [], lambda: 0)
    assert samples(scrape(two), "regen_renders_total") == {}
    assert samples(scrape(one), "regen_renders_total") == {(("outcome", "generated"),): 4.0}


class _Projector:
    """The two things a scrape reads of agents/sql_projector.py's SqlProjector, with its real stats."""

    def __init__(self, behind) -> None:
        self.stats = ProjectorStats()
        self._behind = behind

    def behind(self) -> int:
        return self._behind()


def test_the_sql_read_model_says_how_far_behind_it_is_and_what_it_applied():
    projector = _Projector(lambda: 120)
    projector.stats.add(Applied(applied=40, skipped=5, malformed=["not JSON"]), oldest_ms=1_000_000,
                        committed_at=1_000.25)
    metrics = Metrics()
    metrics.watch_sql_read_model(projector)
    families = scrape(metrics)
    assert samples(families, "regen_sql_read_model_behind") == {(): 120.0}
    assert samples(families, "regen_sql_read_model_lag_seconds") == {(): 0.25}
    assert samples(families, "regen_sql_read_model_records_total") == {
        (("outcome", "applied"),): 40.0, (("outcome", "skipped"),): 5.0, (("outcome", "malformed"),): 1.0}
    labels = {name for f in families.values() for s in f.samples for name in s.labels}
    assert labels <= BOUNDED_LABELS


def test_a_projector_that_cannot_be_read_leaves_its_figures_out_and_the_scrape_answers():
    def consumer_moving():
        raise AssertionError("Partition is not assigned")

    metrics = Metrics()
    metrics.watch_sql_read_model(_Projector(consumer_moving))
    metrics.renders.labels("generated").inc()
    families = scrape(metrics)
    assert "regen_sql_read_model_behind" not in families
    assert samples(families, "regen_renders_total") == {(("outcome", "generated"),): 1.0}
    assert samples(scrape(metrics), "regen_metrics_read_errors_total") == {
        (("gauge", "regen_sql_read_model"),): 1.0}
