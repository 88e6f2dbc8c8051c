"""The SQL read model read back as the Faust tables it mirrors, and the
difference between the two: how the tests (and anyone checking a read
model) see that SQL holds exactly the projections."""

from __future__ import annotations

from typing import Any

import orjson

from regen.projections.groups import GroupState
from regen.projections.progress import BatchState
from regen.projections.rebuild import Projections
from regen.projections.sql_rows import MIRRORED_TABLES, job_state, target_tables
from regen.projections.sql_store import SqlStore
from regen.projections.state import JobState, Record

_TYPED: dict[str, type[Record]] = {"jobs": JobState, "batches": BatchState, "groups": GroupState}


def mirrored_tables() -> list[str]:
    return [*MIRRORED_TABLES, *target_tables()]


def sql_tables(store: SqlStore) -> dict[str, dict[str, Any]]:
    """Every mirrored table as {key: value}, values as the Faust tables hold them."""
    tables: dict[str, dict[str, Any]] = {"jobs": {r["job_id"]: job_state(r) for r in store.dicts("SELECT * FROM jobs")}}
    for name, key in (("batches", "batch_id"), ("groups", "group_id")):
        tables[name] = {r[key]: orjson.loads(r["state"]) for r in store.dicts(f"SELECT {key}, state FROM {name}")}
    for table in target_tables():
        tables[table] = {}
    for row in store.dicts("SELECT target_table, target_id, state FROM targets"):
        tables.setdefault(row["target_table"], {})[row["target_id"]] = orjson.loads(row["state"])
    return tables


def normalized(table: str, value: Any) -> Any:
    """A value as JSON would carry it (tuples are lists), through its record type where it has one."""
    record = _TYPED.get(table)
    if record is not None:
        typed = record.from_dict(value)
        value = typed.to_dict() if typed is not None else {"malformed_row": value}
    return orjson.loads(orjson.dumps(value))


def differences(sql: dict[str, dict[str, Any]], faust: dict[str, dict[str, Any]]) -> list[str]:
    """Every key whose value differs, or that only one side has, per mirrored table."""
    found = []
    for table in mirrored_tables():
        left, right = sql.get(table, {}), faust.get(table, {})
        for key in sorted(left.keys() | right.keys()):
            if key not in left:
                found.append(f"{table}/{key}: only in the Faust table")
            elif key not in right:
                found.append(f"{table}/{key}: only in SQL")
            elif normalized(table, left[key]) != normalized(table, right[key]):
                found.append(f"{table}/{key}: SQL {left[key]!r} != Faust {right[key]!r}")
    return found


def as_projections(sql: dict[str, dict[str, Any]], videos: dict[str, dict]) -> Projections:
    """The SQL rows in the shape rebuild-projections compares (videos are not
    mirrored: the caller passes the live ones)."""
    return Projections(assets=sql.get("assets", {}), jobs=sql.get("jobs", {}), annotations=sql.get("annotations", {}),
                       videos=videos, segmentations=sql.get("segmentations", {}))
