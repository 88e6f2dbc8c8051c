"""One settings object for the whole service, read from environment variables.

Every environment variable regen reads is named in ``ENVIRONMENT`` below and
nowhere else, so ``regen config`` can print all of them and a reader can find
them in one place. It sits at the top of the package, below no layer, so
every layer (imaging, kinds, streams, agents, cli) may import it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from regen.generator_config import GeneratorConfig, describe_generators, parse_generators
from regen.streams.exceptions import ConfigError

DEFAULT_STATE_DIR = Path(os.path.expanduser("~")) / ".regen"

# name of the setting -> environment variable
ENVIRONMENT: dict[str, str] = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "kafka_ssl_cafile": "KAFKA_SSL_CAFILE",
    "kafka_ssl_certfile": "KAFKA_SSL_CERTFILE",
    "kafka_ssl_keyfile": "KAFKA_SSL_KEYFILE",
    "app_id": "REGEN_APP_ID",
    "topic_prefix": "REGEN_TOPIC_PREFIX",
    "partitions": "REGEN_PARTITIONS",
    "media_roots": "REGEN_MEDIA_ROOTS",
    "image_store": "REGEN_IMAGE_STORE",
    "state_dir": "REGEN_STATE_DIR",
    "store_url": "REGEN_TABLE_STORE",
    "web_host": "REGEN_WEB_HOST",
    "web_port": "REGEN_WEB_PORT",
    "web_token": "REGEN_WEB_TOKEN",
    "admin_token": "REGEN_ADMIN_TOKEN",
    "web_debug_endpoints": "REGEN_WEB_DEBUG_ENDPOINTS",
    "web_allow_anonymous": "REGEN_WEB_ALLOW_ANONYMOUS",
    "advertised_url": "REGEN_ADVERTISED_URL",
    "variants": "REGEN_VARIANTS",
    "pregenerate_variants": "REGEN_PREGENERATE_VARIANTS",
    "presets": "REGEN_PRESETS",
    "render_processes": "REGEN_RENDER_PROCESSES",
    "render_timeout": "REGEN_RENDER_TIMEOUT",
    "render_batch_size": "REGEN_RENDER_BATCH_SIZE",
    "background_min_share": "REGEN_BACKGROUND_MIN_SHARE",
    "max_attempts": "REGEN_MAX_ATTEMPTS",
    "retry_first_delay": "REGEN_RETRY_FIRST_DELAY",
    "retry_factor": "REGEN_RETRY_FACTOR",
    "retry_max_delay": "REGEN_RETRY_MAX_DELAY",
    "fault_hang_pattern": "REGEN_FAULT_HANG_PATTERN",
    "fault_swap_to": "REGEN_FAULT_SWAP_TO",
    "stuck_after": "REGEN_STUCK_AFTER",
    "pending_warn_threshold": "REGEN_PENDING_WARN_THRESHOLD",
    "idle_delay": "REGEN_IDLE_DELAY",
    "composite_max_frames": "REGEN_COMPOSITE_MAX_FRAMES",
    "composite_variant": "REGEN_COMPOSITE_VARIANT",
    "overlay_variants": "REGEN_OVERLAY_VARIANTS",
    "max_source_pixels": "REGEN_MAX_SOURCE_PIXELS",
    "max_source_bytes": "REGEN_MAX_SOURCE_BYTES",
    "composite_pixel_budget": "REGEN_COMPOSITE_PIXEL_BUDGET",
    "decode_budget": "REGEN_DECODE_BUDGET",
    "render_memory_mb": "REGEN_RENDER_MEMORY_MB",
    "image_formats": "REGEN_IMAGE_FORMATS",
    "video_containers": "REGEN_VIDEO_CONTAINERS",
    "log_level": "REGEN_LOG_LEVEL",
    "broker_backoff_max": "REGEN_BROKER_BACKOFF_MAX",
    "session_timeout": "REGEN_SESSION_TIMEOUT",
    "group_max_members": "REGEN_GROUP_MAX_MEMBERS",
    "group_stuck_after": "REGEN_GROUP_STUCK_AFTER",
    "webhook_urls": "REGEN_WEBHOOK_URLS",
    "webhook_hosts": "REGEN_WEBHOOK_HOSTS",
    "webhook_secret": "REGEN_WEBHOOK_SECRET",
    "webhook_progress_interval": "REGEN_WEBHOOK_PROGRESS_INTERVAL",
    "webhook_retries": "REGEN_WEBHOOK_RETRIES",
    "webhook_timeout": "REGEN_WEBHOOK_TIMEOUT",
    "generators": "REGEN_GENERATORS",
    "generated_variants": "REGEN_GENERATED_VARIANTS",
    "generation_concurrency": "REGEN_GENERATION_CONCURRENCY",
    "live_max_streams": "REGEN_LIVE_MAX_STREAMS",
    "live_url": "REGEN_LIVE_URL",
    # Images by URL (agents/image_views.py)
    "image_wait": "REGEN_IMAGE_WAIT_S",
    "image_max_age": "REGEN_IMAGE_MAX_AGE",
    "image_retry_on_view": "REGEN_IMAGE_RETRY_ON_VIEW_S",
    "image_placeholder": "REGEN_IMAGE_PLACEHOLDER",
    "gc_grace": "REGEN_GC_GRACE",
    "store_scan_interval": "REGEN_STORE_SCAN_INTERVAL",
    "sql_url": "REGEN_SQL_URL",
    "sql_projector": "REGEN_SQL_PROJECTOR",
    "sql_batch_size": "REGEN_SQL_BATCH_SIZE",
    "sql_batch_interval": "REGEN_SQL_BATCH_INTERVAL",
    # Stalled partitions (agents/stall_watch.py)
    "stall_after": "REGEN_STALL_AFTER",
}

SECRET_SETTINGS = frozenset({"web_token", "kafka_sasl_password", "webhook_secret", "admin_token"})

KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Settings:
    """Effective configuration. Build it with ``Settings.from_env()``."""

    bootstrap_servers: str = ""  # empty: use the local broker started by `regen broker start`
    # How every Kafka client regen builds talks to the broker (streams/connection.py).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    # Empty CA file: the system's trusted CAs. Certificate and key: mutual TLS.
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    app_id: str = "regen"
    # Prefix of every topic regen owns; tests use it to isolate runs on one broker.
    topic_prefix: str = "regen"
    # Every regen topic has this many partitions: Faust tables require the
    # source topics and changelogs to be co-partitioned.
    partitions: int = 4
    media_roots: tuple[Path, ...] = field(default_factory=tuple)
    image_store: Path = DEFAULT_STATE_DIR / "images"
    state_dir: Path = DEFAULT_STATE_DIR
    store_url: str = "rocksdb://"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_token: str = ""
    # Bearer token of the operator commands over HTTP (POST /admin/...,
    # agents/admin_views.py); empty: they are off. Never the read token.
    admin_token: str = ""
    web_debug_endpoints: bool = False
    # Serve the API on a non-loopback address without a token: only when the
    # network in front of it is trusted, so it has to be asked for by name.
    web_allow_anonymous: bool = False
    # The URL the other workers reach this one's API at. It travels in the
    # consumer group's metadata, and queries for keys this worker owns are
    # forwarded to it, so it must name this worker alone: never the bind
    # address 0.0.0.0, which every container shares. Empty: derived (see
    # advertised_web_url).
    advertised_url: str = ""
    variants: tuple[str, ...] = ("h400.jpg", "h400.webp", "h200.jpg", "full.png")
    pregenerate_variants: tuple[str, ...] = ("h400.jpg", "h400.webp")
    # Variants with a fit and quality of their own, "name=definition" each
    # (imaging/variants.py): card=512x512,cover,jpg,q80. A preset is requested
    # by its name, which REGEN_VARIANTS lists like any other variant.
    presets: tuple[str, ...] = ()
    render_processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    # A thumbnail of a 50 MP photo takes well under 2 s here; 60 s only trips on
    # a decoder that is stuck, not on one that is slow.
    render_timeout: float = 60.0
    # Jobs taken from a lane at once: enough to keep every render process busy.
    render_batch_size: int = 16
    # Requests go before background work, but while both wait, background
    # still gets at least this share of the render processes (never starved).
    background_min_share: float = 0.2
    # Retriable errors (I/O, a source not there yet, a killed or hung render)
    # are retried from the retry topic: first delay, factor, cap, attempts.
    max_attempts: int = 3
    retry_first_delay: float = 1.0
    retry_factor: float = 2.0
    retry_max_delay: float = 10.0
    # A job marked running for longer than this is taken for abandoned and
    # sent again; far above the render timeout, so a slow job is never doubled.
    stuck_after: float = 600.0
    # The sweeper logs a warning when a video has more stale annotations than this.
    pending_warn_threshold: int = 50
    # Testing only: a render whose source path contains this hangs (see agents/faults.py).
    fault_hang_pattern: str = ""
    # Testing only: every source is swapped for a symlink to this file right
    # after it is opened (see agents/faults.py).
    fault_swap_to: str = ""
    # An annotation is rendered once nobody has moved it for this long: a
    # drag sends dozens of edits a second, and only the last one matters.
    idle_delay: float = 3.0
    # Longer spans are sampled evenly down to this many frames (memory and time).
    composite_max_frames: int = 64
    composite_variant: str = "full.png"
    # Overlays (segmentation polygons over an image) pre-generated once a
    # segmentation is idle; others are rendered when requested. Empty: the
    # first WebP variant of REGEN_VARIANTS (see standing_overlay_variants).
    overlay_variants: tuple[str, ...] = ()
    max_source_pixels: int = 50_000_000
    max_source_bytes: int = 200 * 1024 * 1024
    # Pixels a composite may decode in all (frames x width x height): the
    # frames are held at once, 3 bytes a pixel, so 400 MP is 1.2 GB, under
    # the render process's memory cap with room for the median's bands.
    composite_pixel_budget: int = 400_000_000
    # Seconds a composite may spend decoding its span before it gives up
    # (resource_limit); below the render timeout, so the error says why.
    decode_budget: float = 30.0
    # Data-memory cap (RLIMIT_DATA) of each render process, in MiB (0: none). A bomb
    # that gets past the pixel checks fails with resource_limit instead of
    # waking the kernel's OOM killer, which may pick the worker or broker.
    render_memory_mb: int = 2048
    # Pillow plugins a source may be decoded by; every other plugin (EPS,
    # which runs Ghostscript, and 40 more) is never tried.
    image_formats: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF")
    # FFmpeg demuxers a video may be read by. Playlists (hls), concat and
    # every other demuxer that opens further files are refused.
    video_containers: tuple[str, ...] = ("mov", "matroska", "avi", "mpeg", "mpegts")
    log_level: str = "info"
    # While the broker is away, reconnects and metadata updates wait longer
    # each time (from 0.1 s, doubling, with jitter) up to this many seconds:
    # the longest a worker takes to notice the broker is back.
    broker_backoff_max: float = 5.0
    # How long a killed worker's partitions wait before the group gives them
    # to the others (Kafka's session.timeout.ms). Heartbeats go every 2 s, so
    # at least 6 s (also the broker's group.min.session.timeout.ms default).
    session_timeout: float = 10.0
    # A group's row keeps every member (its output or failure): past this
    # many, new members are counted as refused, not kept. Groups are cases of
    # tens of images; a batch of thousands has batch progress.
    group_max_members: int = 1000
    # An unfinished group with no member changing for this long is stuck
    # (metric regen_stuck_groups and a Stuck event).
    group_stuck_after: float = 600.0
    # Webhooks: every group's progress and completion also go to these URLs;
    # a URL (here or in a GroupDeclared) is only ever called if its host is
    # in webhook_hosts. Bodies are signed with webhook_secret (HMAC-SHA256).
    webhook_urls: tuple[str, ...] = ()
    webhook_hosts: tuple[str, ...] = ()
    webhook_secret: str = ""
    webhook_progress_interval: float = 5.0  # at most one progress post per group this often
    webhook_retries: int = 3  # after the first attempt, with backoff; then a dead letter
    webhook_timeout: float = 10.0
    # Image models a GenerationRequested may name (JSON, see regen/generator_config.py).
    generators: tuple[GeneratorConfig, ...] = ()
    # Variants every generated image is rendered into; empty: the first of REGEN_VARIANTS.
    generated_variants: tuple[str, ...] = ()
    # Generation jobs one worker has in flight at once (each mostly waits on its model call).
    generation_concurrency: int = 5
    # Live streams (server-sent events, agents/live_views.py) one worker
    # keeps open at once, relayed ones included; beyond it a client gets 503.
    live_max_streams: int = 100
    # The worker `regen import --follow` follows its batch at (over SSE);
    # empty: the local worker, http://<web host>:<web port> (see live_base_url).
    live_url: str = ""
    # Images by URL (GET /images/{kind}/{id}/{variant}): how long a view of a
    # missing image waits for its render before answering 202 (or the
    # placeholder); the max-age of an image's Cache-Control (the URL is not
    # content-addressed: a new revision gets the same URL, so keep it short;
    # the ETag makes revalidation cheap); how long after a failure a view
    # tries the render again (at most once per this interval per image); and
    # what a view shows while waiting: "" (202 + Retry-After), "builtin" (a
    # small SVG), or the path of an image file.
    image_wait: float = 5.0
    image_max_age: int = 60
    image_retry_on_view: float = 300.0
    image_placeholder: str = ""
    # Storage lifecycle (agents/lifecycle.py): an output no target holds is
    # deleted once it has been without a holder, and untouched, this many
    # seconds; `regen gc` spares files younger than this. Long enough that a
    # render finishing meanwhile is folded (and its file held) first.
    gc_grace: float = 3600.0
    # How often the store is walked for regen_store_bytes/files (one worker does it).
    store_scan_interval: float = 300.0
    # The SQL read model (projections/sql_store.py): empty is a SQLite file in
    # the state dir; postgresql://user:password@host/db for a shared one.
    sql_url: str = ""
    # Each worker runs the projector that fills it (off: `regen sql-projector` does).
    sql_projector: bool = True
    # Records applied per transaction at most, and how long a fetch waits for
    # more before the projector applies what it has (its lag when idle).
    sql_batch_size: int = 2000
    sql_batch_interval: float = 0.1
    # A partition this worker reads with records after its committed offset,
    # and that offset unchanged this long, is told stalled (log, metric
    # regen_stalled_partitions, /health). Twice the default render timeout:
    # a lane's batch commits only once its slowest render is done.
    stall_after: float = 120.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        defaults = cls()
        for f in fields(cls):
            name = ENVIRONMENT[f.name]
            if name in env and env[name] != "":
                values[f.name] = _parse(f.name, name, env[name], getattr(defaults, f.name))
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]  # each value parsed to its field's type by _parse
        settings.validate()
        return settings

    def with_overrides(self, **changes) -> Settings:
        changed = replace(self, **changes)
        changed.validate()
        return changed

    def validate(self) -> None:
        from regen.imaging.errors import ImagingError
        from regen.imaging.variants import parse_variant

        if self.partitions < 1:
            raise ConfigError(f"{ENVIRONMENT['partitions']}={self.partitions}: must be at least 1")
        self._validate_kafka_security()
        if self.admin_token and self.admin_token == self.web_token:
            raise ConfigError(f"{ENVIRONMENT['admin_token']} equals {ENVIRONMENT['web_token']}: anyone who may read "
                              f"could then command; set {ENVIRONMENT['admin_token']} to a different long random string")
        if self.advertised_url:
            _check_advertised_url(self.advertised_url)
        if self.render_processes < 1:
            raise ConfigError(
                f"{ENVIRONMENT['render_processes']}={self.render_processes}: must be at least 1"
            )
        if self.render_timeout <= 0:
            raise ConfigError(f"{ENVIRONMENT['render_timeout']}={self.render_timeout}: must be > 0")
        presets = self._validate_presets()
        for name in self.variants:
            try:
                parse_variant(name, presets.get(name, ""))
            except ImagingError as e:
                raise ConfigError(f"{ENVIRONMENT['variants']}: {e}") from e
        if not 0 <= self.background_min_share < 1:
            raise ConfigError(f"{ENVIRONMENT['background_min_share']}={self.background_min_share}: "
                              "must be at least 0 and below 1")
        if self.max_attempts < 1:
            raise ConfigError(f"{ENVIRONMENT['max_attempts']}={self.max_attempts}: must be at least 1")
        if self.retry_first_delay < 0 or self.retry_factor < 1 or self.retry_max_delay < self.retry_first_delay:
            raise ConfigError(f"retry delays must satisfy 0 <= {ENVIRONMENT['retry_first_delay']} <= "
                              f"{ENVIRONMENT['retry_max_delay']} and {ENVIRONMENT['retry_factor']} >= 1")
        if self.broker_backoff_max < 0.1:
            raise ConfigError(f"{ENVIRONMENT['broker_backoff_max']}={self.broker_backoff_max}: "
                              "must be at least 0.1 (seconds)")
        if not 6 <= self.session_timeout <= 300:
            raise ConfigError(f"{ENVIRONMENT['session_timeout']}={self.session_timeout}: must be 6..300 (seconds; "
                              "heartbeats go every 2 s, and a broker refuses less than its "
                              "group.min.session.timeout.ms, 6 s by default)")
        if self.idle_delay < 0:
            raise ConfigError(f"{ENVIRONMENT['idle_delay']}={self.idle_delay}: must be >= 0")
        if not 1 <= self.composite_max_frames <= 1024:
            raise ConfigError(f"{ENVIRONMENT['composite_max_frames']}={self.composite_max_frames}: must be 1..1024")
        if self.composite_variant not in self.variants:
            raise ConfigError(f"{ENVIRONMENT['composite_variant']}={self.composite_variant} is not one of "
                              f"{ENVIRONMENT['variants']} ({', '.join(self.variants)})")
        if self.composite_pixel_budget < 1 or self.decode_budget <= 0 or self.render_memory_mb < 0:
            raise ConfigError(f"{ENVIRONMENT['composite_pixel_budget']} and {ENVIRONMENT['decode_budget']} "
                              f"must be > 0, {ENVIRONMENT['render_memory_mb']} >= 0 (0: no cap)")
        from regen.imaging.limits import KNOWN_IMAGE_FORMATS, KNOWN_VIDEO_CONTAINERS

        for setting, known in (("image_formats", KNOWN_IMAGE_FORMATS), ("video_containers", KNOWN_VIDEO_CONTAINERS)):
            odd = [v for v in getattr(self, setting) if v not in known]
            if odd:
                raise ConfigError(f"{ENVIRONMENT[setting]} names {', '.join(odd)}; known: {', '.join(sorted(known))}")
        self._validate_groups_and_webhooks()
        self._validate_image_urls()
        if self.gc_grace < 1 or self.store_scan_interval < 1:
            raise ConfigError(f"{ENVIRONMENT['gc_grace']}={self.gc_grace} and {ENVIRONMENT['store_scan_interval']}="
                              f"{self.store_scan_interval}: both must be at least 1 (seconds)")
        if not 1 <= self.generation_concurrency <= 1000:
            raise ConfigError(f"{ENVIRONMENT['generation_concurrency']}={self.generation_concurrency}: must be 1..1000")
        self._validate_live()
        self._validate_sql()
        self._validate_stall_after()
        odd = [v for v in self.generated_variants if v not in self.variants]
        if odd:
            raise ConfigError(f"{ENVIRONMENT['generated_variants']} names {', '.join(odd)}, which "
                              f"{ENVIRONMENT['variants']} does not configure ({', '.join(self.variants)})")
        unknown = [v for v in self.pregenerate_variants if v not in self.variants]
        if unknown:
            raise ConfigError(
                f"{ENVIRONMENT['pregenerate_variants']} names {', '.join(unknown)}, "
                f"which {ENVIRONMENT['variants']} does not configure ({', '.join(self.variants)})"
            )
        unknown_overlays = [v for v in self.overlay_variants if v not in self.variants]
        if unknown_overlays:
            raise ConfigError(f"{ENVIRONMENT['overlay_variants']} names {', '.join(unknown_overlays)}, "
                              f"which {ENVIRONMENT['variants']} does not configure ({', '.join(self.variants)})")
        # An overlay scales the polygons' points by one factor: a variant that
        # crops or pads (cover, contain) or a preset would misplace them.
        cropped = [v for v in self.overlay_variants if self.preset(v) or self.variant(v).fit != "inside"]
        if cropped:
            raise ConfigError(f"{ENVIRONMENT['overlay_variants']} names {', '.join(cropped)}: overlays are drawn "
                              "over h<px>, w<px> or full variants only (a crop or padding would misplace the "
                              "polygons); name one of those")

    def _validate_groups_and_webhooks(self) -> None:
        env = ENVIRONMENT
        if not 1 <= self.group_max_members <= 100_000:
            raise ConfigError(f"{env['group_max_members']}={self.group_max_members}: must be 1..100000")
        if self.group_stuck_after <= 0 or self.webhook_progress_interval < 0 or self.webhook_timeout <= 0:
            raise ConfigError(f"{env['group_stuck_after']} and {env['webhook_timeout']} must be > 0, "
                              f"{env['webhook_progress_interval']} >= 0")
        if not 0 <= self.webhook_retries <= 10:
            raise ConfigError(f"{env['webhook_retries']}={self.webhook_retries}: must be 0..10")
        from regen.webhook_signature import WebhookUrlError, check_webhook_url

        for url in self.webhook_urls:
            try:
                check_webhook_url(url, self.webhook_hosts)
            except WebhookUrlError as e:
                raise ConfigError(f"{env['webhook_urls']}: {e}") from e
        if (self.webhook_urls or self.webhook_hosts) and not self.webhook_secret:
            raise ConfigError(f"webhooks are configured but {env['webhook_secret']} is not set: set it to a "
                              "long random string shared with the receivers, which check each body's signature")

    def _validate_live(self) -> None:
        if not 1 <= self.live_max_streams <= 100_000:
            raise ConfigError(f"{ENVIRONMENT['live_max_streams']}={self.live_max_streams}: must be 1..100000")
        if self.live_url:
            parts = urlsplit(self.live_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"{ENVIRONMENT['live_url']}={self.live_url!r} is not an http(s) URL of a "
                                  "worker, e.g. http://127.0.0.1:6066")

    def live_base_url(self) -> str:
        """Where the CLI reaches a worker's live streams: REGEN_LIVE_URL, or
        this machine's worker (a wildcard bind address is reached on loopback)."""
        if self.live_url:
            return self.live_url.rstrip("/")
        host = self.web_host.strip()
        if host.strip("[]") in WILDCARD_HOSTS:
            host = "127.0.0.1"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.web_port}"
    def _validate_sql(self) -> None:
        env = ENVIRONMENT
        scheme = urlsplit(self.sql_url).scheme if self.sql_url else "sqlite"
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ConfigError(f"{env['sql_url']}: {scheme!r} is not a read model URL; give sqlite:///PATH, "
                              "postgresql://user:password@host:port/database, or nothing (a SQLite file in "
                              f"{env['state_dir']})")
        if not 1 <= self.sql_batch_size <= 100_000:
            raise ConfigError(f"{env['sql_batch_size']}={self.sql_batch_size}: must be 1..100000")
        if not 0 < self.sql_batch_interval <= 10:
            raise ConfigError(f"{env['sql_batch_interval']}={self.sql_batch_interval}: must be above 0 and at "
                              "most 10 (seconds)")

    def _validate_stall_after(self) -> None:
        # Below a few seconds every commit interval (about 1 s) and every
        # lane batch would look stalled; above a day nobody is told in time.
        if not 5 <= self.stall_after <= 86_400:
            raise ConfigError(f"{ENVIRONMENT['stall_after']}={self.stall_after}: must be 5..86400 (seconds a "
                              "partition may wait with its committed offset unchanged before it is told stalled)")

    def _validate_presets(self) -> dict[str, str]:
        from regen.imaging.errors import ImagingError
        from regen.imaging.variants import parse_presets

        env = ENVIRONMENT
        try:
            presets = parse_presets(";".join(self.presets))
        except ImagingError as e:
            raise ConfigError(f"{env['presets']}: {e}") from e
        unlisted = [name for name in presets if name not in self.variants]
        if unlisted:
            raise ConfigError(f"{env['presets']} defines {', '.join(unlisted)}, which {env['variants']} does not "
                              f"list, so nobody could ask for it: add it ({env['variants']}="
                              f"{','.join(self.variants + tuple(unlisted))}) or remove its definition")
        return presets

    def preset(self, variant: str) -> str:
        """The definition of ``variant`` if it names a preset, else "": what
        a render task carries beside the variant's name."""
        for entry in self.presets:
            name, _, spec = entry.partition("=")
            if name.strip() == variant:
                return spec.strip()
        return ""

    def variant(self, name: str):
        """The parsed variant (imaging.variants.Variant) ``name`` stands for
        here; raises InvalidVariant for a name neither valid nor a preset."""
        from regen.imaging.variants import parse_variant

        return parse_variant(name, self.preset(name))

    def _validate_kafka_security(self) -> None:
        protocol, env = self.kafka_security_protocol, ENVIRONMENT
        if protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise ConfigError(f"{env['kafka_security_protocol']}={protocol!r} is not valid; "
                              f"valid: {', '.join(KAFKA_SECURITY_PROTOCOLS)}")
        if self.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            raise ConfigError(f"{env['kafka_sasl_mechanism']}={self.kafka_sasl_mechanism!r} is not valid; "
                              f"valid: {', '.join(KAFKA_SASL_MECHANISMS)}")
        # A setting that would be silently ignored makes someone believe the
        # connection is authenticated or encrypted when it is not.
        uses_sasl, uses_tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
        if uses_sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ConfigError(f"{env['kafka_security_protocol']}={protocol} needs {env['kafka_sasl_username']} "
                              f"and {env['kafka_sasl_password']}")
        if not uses_sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ConfigError(f"{env['kafka_sasl_username']}/{env['kafka_sasl_password']} are set but "
                              f"{env['kafka_security_protocol']}={protocol} does not use SASL; "
                              f"use SASL_SSL (or SASL_PLAINTEXT on a trusted network)")
        tls_files = [env[name] for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
                     if getattr(self, name)]
        if tls_files and not uses_tls:
            raise ConfigError(f"{', '.join(tls_files)} set but {env['kafka_security_protocol']}={protocol} "
                              f"does not use TLS; use SSL or SASL_SSL")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ConfigError(f"{env['kafka_ssl_keyfile']} is set without {env['kafka_ssl_certfile']}: "
                              f"mutual TLS needs the client certificate too")

    def _validate_image_urls(self) -> None:
        env = ENVIRONMENT
        # Below the time a forwarding worker waits for the owner (agents/image_views.py).
        if not 0 <= self.image_wait <= 60:
            raise ConfigError(f"{env['image_wait']}={self.image_wait}: must be 0..60 (seconds)")
        if not 0 <= self.image_max_age <= 31_536_000:
            raise ConfigError(f"{env['image_max_age']}={self.image_max_age}: must be 0..31536000 (seconds)")
        if self.image_retry_on_view <= 0:
            raise ConfigError(f"{env['image_retry_on_view']}={self.image_retry_on_view}: must be > 0 (seconds)")
        placeholder = self.image_placeholder
        if placeholder and placeholder != "builtin" and \
                Path(placeholder).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".gif", ".svg", ".avif"):
            raise ConfigError(f"{env['image_placeholder']}={placeholder!r}: expected empty (answer 202), "
                              f"'builtin', or the path of a .png, .jpg, .webp, .gif, .avif or .svg file")

    def check_web_exposure(self) -> None:
        """Refuse to serve the API to the network without a token.

        Called where a worker starts serving, not in validate(): a client
        command run beside a worker (`regen import` in its container) shares
        its environment and must not fail for the worker's bind address."""
        if self.web_token or self.web_allow_anonymous or is_loopback(self.web_host):
            return
        env = ENVIRONMENT
        raise ConfigError(f"{env['web_host']}={self.web_host!r} would serve the HTTP API to the network without "
                          f"a token: set {env['web_token']} (clients send it as a bearer token), bind to "
                          f"127.0.0.1, or set {env['web_allow_anonymous']}=1 if the network in front is trusted")

    def advertised_web_url(self) -> str:
        """``REGEN_ADVERTISED_URL``, or ``http://<web host>:<web port>`` with
        the machine's host name in place of a wildcard bind address (inside
        a container that is the container's name on its network)."""
        if self.advertised_url:
            return self.advertised_url.rstrip("/")
        host = self.web_host.strip()
        if host.strip("[]") in WILDCARD_HOSTS:
            host = socket.gethostname()
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal
        return f"http://{host}:{self.web_port}"

    def standing_overlay_variants(self) -> tuple[str, ...]:
        """REGEN_OVERLAY_VARIANTS, or the first WebP variant configured (the
        first variant if none is WebP): small files with an alpha channel."""
        if self.overlay_variants:
            return self.overlay_variants
        return (next((v for v in self.variants if v.endswith(".webp")), self.variants[0]),)

    def limits(self):
        """What a render may read and decode (imaging.limits.Limits)."""
        from regen.imaging.limits import Limits

        return Limits(max_pixels=self.max_source_pixels, max_bytes=self.max_source_bytes,
                      composite_pixels=self.composite_pixel_budget, decode_seconds=self.decode_budget,
                      image_formats=self.image_formats, video_containers=self.video_containers)

    def generator(self, name: str) -> GeneratorConfig | None:
        return next((g for g in self.generators if g.name == name), None)

    def topic(self, suffix: str) -> str:
        return f"{self.topic_prefix}.{suffix}"

    def describe(self) -> list[tuple[str, str, str]]:
        """(setting, environment variable, printable value), secrets hidden."""
        rows = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_SETTINGS:
                shown = "********" if value else "(not set)"
            elif f.name == "sql_url" and urlsplit(value).password:  # the database password stays hidden
                shown = value.replace(f":{urlsplit(value).password}@", ":********@")
            elif f.name == "generators":
                shown = describe_generators(value)  # names of the secrets' variables, never their values
            elif isinstance(value, tuple):
                separator = os.pathsep if f.name == "media_roots" else ";" if f.name == "presets" else ","
                shown = separator.join(str(v) for v in value)
            else:
                shown = str(value)
            if f.name == "bootstrap_servers" and not value:
                shown = "(local broker from `regen broker start`)"
            if f.name == "overlay_variants" and not value:
                shown = f"{','.join(self.standing_overlay_variants())} (derived)"
            if f.name == "advertised_url" and not value:
                shown = f"{self.advertised_web_url()} (derived)"
            rows.append((f.name, ENVIRONMENT[f.name], shown))
        return rows

    def __repr__(self) -> str:  # never leak the token into logs
        shown = ", ".join(f"{k}={v!r}" for k, _, v in self.describe())
        return f"Settings({shown})"


WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def _check_advertised_url(url: str) -> None:
    name = ENVIRONMENT["advertised_url"]
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError as e:
        raise ConfigError(f"{name}={url!r}: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={url!r} is not valid: expected http://host:port or https://host:port")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{name}={url!r} is not valid: scheme, host and port only (no path, query or credentials)")
    if parts.hostname in WILDCARD_HOSTS:
        raise ConfigError(f"{name}={url!r}: {parts.hostname} is where a server listens, not an address other "
                          f"workers can reach; name this worker's host")


def is_loopback(host: str) -> bool:
    """True only for addresses other machines cannot reach; a name other
    than localhost may resolve to anything, so it counts as exposed."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _parse(setting: str, env_name: str, raw: str, default: object) -> object:
    try:
        if setting == "generators":
            return parse_generators(raw)
        if setting == "media_roots":
            return tuple(Path(p).expanduser() for p in raw.split(os.pathsep) if p)
        if setting == "presets":  # a definition holds commas: presets are separated by ';'
            return tuple(part.strip() for part in raw.split(";") if part.strip())
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw).expanduser()
        if isinstance(default, tuple):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError as e:
        raise ConfigError(f"{env_name}={raw!r} is not valid: {e}") from e
