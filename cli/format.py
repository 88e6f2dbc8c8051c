"""Pure formatting for the CLI: data in, text out, no printing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def format_table(rows: Iterable[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def format_config(rows: list[tuple[str, str, str]]) -> str:
    return format_table(rows, ("setting", "environment variable", "value"))


def format_asset(asset: dict[str, Any]) -> str:
    head = [
        f"asset     {asset['asset_id']}",
        f"file      {asset['uri']} ({asset['media_type']}, {asset['size_bytes']} bytes)",
        f"sha256    {asset['sha256']}",
        f"revision  {asset['revision']}" + (f"   batch {asset['batch_id']}" if asset.get("batch_id") else ""),
        f"imported  {asset['imported_at']}"
        + (f"   captured {asset['captured_at']}" if asset.get("captured_at") else ""),
        "",
    ]
    rows = []
    for name, v in sorted(asset.get("variants", {}).items()):
        out = v.get("output") or {}
        detail = out.get("uri", "") if v["status"] == "completed" else (v.get("error") or "")
        size = f"{out['width']}x{out['height']}" if out else ""
        rows.append((name, v["status"], size, detail, (out.get("sha256") or "")[:12]))
    table = format_table(rows, ("variant", "status", "size", "output / error", "sha256")) if rows else "no variants yet"
    return "\n".join(head) + table


def format_job(job: dict[str, Any]) -> str:
    lines = [
        f"job       {job['job_id']}",
        f"status    {job['status']}   attempts {job['attempts']}   lane {job['lane']}",
        f"created   {job['created_at']}   updated {job['updated_at']}",
    ]
    if job.get("output"):
        o = job["output"]
        lines.append(f"output    {o['uri']} ({o['width']}x{o['height']}, {o['bytes']} bytes, "
                     f"sha256 {o['sha256'][:12]}…)")
    if job.get("error"):
        lines.append(f"error     {job.get('reason')}/{job.get('error_code')}: {job['error']}")
    if job.get("request_ids"):
        lines.append(f"requests  {', '.join(job['request_ids'])}")
    return "\n".join(lines)


def format_annotation(a: dict[str, Any]) -> str:
    state = "DIRTY (combined image is stale)" if a["dirty"] else "current"
    lines = [
        f"annotation  {a['annotation_id']}   video {a['video_id']}",
        f"state       {state}",
        f"revisions   wanted {a['wanted_revision']}, rendered {a['rendered_revision']}",
        f"span        frames {a['start_frame']}..{a['end_frame']} of {a['source']}"
        + (f", crop {','.join(map(str, a['crop']))}" if a.get("crop") else ""),
        f"changed     {a['last_change_at']}",
    ]
    if a.get("output"):
        o = a["output"]
        frames = a.get("frames_used") or []
        lines.append(f"rendered    {a.get('rendered_at')}: {o['uri']} ({o['width']}x{o['height']}, "
                     f"median of {len(frames)} frames)")
    if a.get("last_error"):
        lines.append(f"error       {a['last_error']}")
    return "\n".join(lines)


def format_video(v: dict[str, Any]) -> str:
    dirty = ", ".join(v["dirty_annotations"]) or "none"
    lines = [f"video    {v['video_id']}", f"pending  {v['pending']}", f"dirty    {dirty}"]
    if "total" in v:
        eta = v.get("eta_s")
        lines.append(f"progress {v['current']}/{v['total']} current, {v['waiting']} waiting, {v['failed']} failed; "
                     f"{v['rate_per_s']:.1f}/s, ETA {'-' if eta is None else f'{eta:.0f} s'}")
        lines += [f"failed   {f['annotation_id']} r{f['revision']}: {f['error']}" for f in v.get("failures", [])[:20]]
    return "\n".join(lines)


def format_batch(b: dict[str, Any]) -> str:
    eta = b.get("eta_s")
    eta_text = "done" if b["done"] else ("unknown (no progress lately)" if eta is None else f"{eta:.0f} s")
    lines = [f"batch     {b['batch_id']}",
             f"progress  {b['completed'] + b['failed']}/{b['total']} ({b['percent']:.1f} %): "
             f"{b['completed']} completed, {b['failed']} failed, {b['pending']} pending",
             f"rate      {b['rate_per_s']:.1f}/s, ETA {eta_text}"]
    for failure in b.get("failures", [])[:20]:
        lines.append(f"failed    {failure['asset_id']} {failure['variant']}: {failure['error']}")
    return "\n".join(lines)


def format_group(g: dict[str, Any]) -> str:
    done = g["completed"] + g["failed"]
    lines = [f"group     {g['group_id']}" + (f"  ({g['label']})" if g.get("label") else ""),
             f"status    {g['status']}: {done}/{g['total']} finished, {g['completed']} completed, "
             f"{g['failed']} failed, {g['pending']} pending",
             f"started   {g.get('started_at') or '-'}   finished {g.get('finished_at') or '-'}"]
    for member, uri in sorted(g.get("outputs", {}).items())[:20]:
        lines.append(f"output    {member} -> {uri}")
    for failure in g.get("failures", [])[:20]:
        lines.append(f"failed    {failure['member']}: {failure['error']}")
    if g.get("refused_members"):
        lines.append(f"refused   {g['refused_members']} member(s) past REGEN_GROUP_MAX_MEMBERS")
    return "\n".join(lines)


def deadletter_fields(record: Any) -> dict[str, Any]:
    """A dead-letter record as plain fields (headers decoded, value as text)."""
    headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or [])}
    value = (record.value or b"").decode("utf-8", "replace")
    return {
        "offset": record.offset,
        "dead_lettered_at": record.timestamp,
        "topic": headers.get("kafka_dlt-original-topic"),
        "partition": headers.get("kafka_dlt-original-partition"),
        "original_offset": headers.get("kafka_dlt-original-offset"),
        "group": headers.get("kafka_dlt-original-consumer-group"),
        "exception": headers.get("kafka_dlt-exception-fqcn"),
        "reason": headers.get("kafka_dlt-exception-message"),
        "key": (record.key or b"").decode("utf-8", "replace"),
        "ce_id": headers.get("ce_id"),
        "ce_type": headers.get("ce_type"),
        "value": value,
    }


def format_deadletters(rows: list[dict[str, Any]], total: int) -> str:
    if not rows:
        return "no dead letters"
    lines = [f"{total} dead letter(s); the newest {len(rows)}:", ""]
    for row in rows:
        value = row["value"] if len(row["value"]) <= 120 else row["value"][:117] + "..."
        lines += [
            f"{row['topic']}[{row['partition']}]@{row['original_offset']}  key {row['key'] or '-'}"
            + (f"  ce_id {row['ce_id']}" if row.get("ce_id") else ""),
            f"  why    {row['reason']}",
            f"  value  {value}",
            "",
        ]
    return "\n".join(lines).rstrip()


def format_duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def format_background(data: dict[str, Any]) -> str:
    """The background switch as a worker knows it (GET /control/background)."""
    if not data.get("known", True):
        return "background rendering: not known yet (the worker is still reading the control topic; held meanwhile)"
    if not data.get("paused"):
        since = f" (resumed {data['since']} by {data.get('by') or '?'})" if data.get("since") else ""
        return f"background rendering: running{since}"
    why = f"\nreason: {data['reason']}" if data.get("reason") else ""
    return (f"background rendering: PAUSED since {data.get('since')} by {data.get('by') or '?'} "
            f"(command {data.get('command_id')}){why}\nresume with `regen resume background`")
