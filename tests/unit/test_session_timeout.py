"""REGEN_SESSION_TIMEOUT: how long a killed worker's partitions wait for it."""

from __future__ import annotations

import pytest

from regen.settings import Settings
from regen.streams.exceptions import ConfigError


def test_the_session_timeout_is_10_s_unless_set_and_reaches_the_consumer(tmp_path):
    from regen.streams.app import create_app

    assert Settings.from_env({}).session_timeout == 10.0
    app = create_app(Settings.from_env({"REGEN_SESSION_TIMEOUT": "6", "REGEN_STATE_DIR": str(tmp_path)}),
                     "127.0.0.1:9092")
    assert app.conf.broker_session_timeout == 6.0
    assert app.conf.broker_heartbeat_interval * 3 <= app.conf.broker_session_timeout


@pytest.mark.parametrize("value", ["5", "301", "soon"])
def test_a_session_timeout_out_of_range_says_what_is_valid(value):
    with pytest.raises(ConfigError, match="REGEN_SESSION_TIMEOUT"):
        Settings.from_env({"REGEN_SESSION_TIMEOUT": value})
