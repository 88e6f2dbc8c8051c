from regen.agents.render import retry_delay
from regen.settings import Settings


def test_backoff_doubles_with_jitter_and_is_capped():
    settings = Settings.from_env({})
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)):
        delays = [retry_delay(settings, attempt) for _ in range(200)]
        assert min(delays) >= base * 0.8 - 1e-9 and max(delays) <= base * 1.2 + 1e-9
        assert max(delays) - min(delays) > base * 0.1, "jittered"
    assert max(retry_delay(settings, 10) for _ in range(200)) <= settings.retry_max_delay
