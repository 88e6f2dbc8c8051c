"""The changelogs a worker creates before it joins its group are exactly the
ones Faust's tables write to (streams/admin.py says why they come first)."""

from __future__ import annotations

from regen.agents.tables import create_tables, table_names
from regen.settings import Settings
from regen.streams.admin import changelog_name
from regen.streams.app import create_app


def test_the_changelogs_created_up_front_are_the_tables_changelogs(tmp_path):
    settings = Settings.from_env({"REGEN_STATE_DIR": str(tmp_path), "REGEN_APP_ID": "regen-x"})
    app = create_app(settings, "localhost:9092")
    tables = create_tables(app)
    every_table = [tables.jobs, tables.videos, tables.batches, tables.groups, *tables.by_kind.values(),
                   tables.outputs]
    assert {t.changelog_topic.get_topic_name() for t in every_table} == \
        {changelog_name(settings, name) for name in table_names()}
    assert len(table_names()) == len(every_table)
