"""The Faust application, built from Settings.

A factory rather than a module-level app: tests and benchmarks build apps
with their own topic prefix, group and state directory on one broker.
"""

from __future__ import annotations

import faust

from regen.settings import Settings
from regen.streams.connection import faust_credentials
from regen.streams.consumer import RegenApp


def create_app(settings: Settings, bootstrap: str, cluster: str = "default") -> faust.App:
    debug = settings.web_debug_endpoints
    app = RegenApp(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        store=settings.store_url,
        # Table state (RocksDB) is a cache of the changelogs of one cluster: a
        # broker recreated from scratch (the local one, a wiped test cluster)
        # gets fresh state instead of offsets its changelogs never had.
        datadir=str(settings.state_dir / "faust" / cluster),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Commit often: a killed worker then redoes seconds of work, not minutes.
        broker_commit_interval=1.0,
        # Heartbeats come from Faust's consumer thread, not from the agents,
        # so long renders do not starve them. The session timeout is how long
        # a killed worker's partitions wait before another worker takes them:
        # keep it short. Slow batches are covered by the poll interval.
        broker_session_timeout=settings.session_timeout,  # 10 s unless REGEN_SESSION_TIMEOUT says otherwise
        broker_heartbeat_interval=2.0,
        broker_max_poll_interval=1800.0,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        # What the group's metadata names this worker by, and where queries
        # for its partitions are forwarded. Faust would derive it from
        # web_host, the bind address: 0.0.0.0:6066 in every container, so
        # every member advertised the same URL.
        canonical_url=settings.advertised_web_url(),
        web_in_thread=False,
        # Faust's own table dumps and graphs are off unless asked for: the
        # service's API is what projections/views.py exposes.
        web_router_enabled=debug,
        web_tables_enabled=debug,
        web_graph_enabled=debug,
        web_stats_enabled=debug,
        web_metrics_enabled=False,
        web_cors_options=None,
        table_cleanup_interval=30.0,
        stream_wait_empty=True,
    )
    return app
