"""A fleet whose membership changes mid-batch: one worker SIGKILLed for good,
one added, and nothing lost, nothing rendered twice into the store, every
query answered by every worker that is up."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from PIL import Image

from regen.cli.importer import scan
from regen.schemas.events import ImageGenerated
from regen.streams.results import follow_completions, wait_for
from tests.helpers import make_photos, publish_all, run, variant_key
from tests.integration.test_fleet import TOKEN, Fleet, same_everywhere

IMPORTS = 300


@pytest.mark.slow  # about 90 s: 300 photos through three, then two, then three workers
def test_a_worker_killed_and_one_added_mid_batch_lose_nothing(start_worker, corpus, tmp_path):
    media = tmp_path / "media"
    photos = make_photos(media, IMPORTS)
    fleet = Fleet(start_worker, tmp_path, env={"REGEN_MEDIA_ROOTS": f"{corpus}:{media}", "REGEN_WEB_TOKEN": TOKEN,
                                               "REGEN_PREGENERATE_VARIANTS": "h400.jpg,h200.jpg",
                                               "REGEN_STUCK_AFTER": "600",
                                               # The killed worker's partitions wait 6 s, not 10, to move.
                                               "REGEN_SESSION_TIMEOUT": "6",
                                               # Six partitions: 2+2+2, then 3+3 after the kill, then 2+2+2
                                               # again (four would leave a third worker idle).
                                               "REGEN_PARTITIONS": "6"})
    for _ in range(3):
        fleet.add()
    settings, bootstrap = fleet.settings, fleet.bootstrap
    events = [s.event for s in scan(photos, [media], "membership")]
    run(publish_all(settings, bootstrap, events))
    expected = {f"{e.asset_id}/{v}" for e in events for v in settings.pregenerate_variants}

    run(_completions_reach(settings, bootstrap, len(expected) // 4))
    killed = fleet.workers[1]
    killed.stop(signal.SIGKILL)  # for good: its partitions move to the others after the session timeout
    run(_completions_reach(settings, bootstrap, len(expected) // 2))
    fleet.add()  # joins mid-batch: takes partitions over from the survivors

    seen = run(wait_for(settings, bootstrap, variant_key, expected, timeout=180))
    assert all(isinstance(c, ImageGenerated) for c in seen.values())

    # Exactly one decodable file per asset and pre-generated variant.
    files = [p for p in settings.image_store.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")], "no partial files left behind"
    per_variant = Counter(p.name for p in files)
    assert per_variant == {v: IMPORTS for v in settings.pregenerate_variants}, per_variant
    for path in files[::7]:
        with Image.open(path) as im:
            im.load()

    up = [w for w in fleet.workers if w is not killed]
    # Every live worker answers for every asset, the same.
    for event in events[::5]:
        answers = fleet.wait_all(f"/assets/{event.asset_id}", lambda a: same_everywhere(a) and all(
            v["status"] == "completed" for v in a[0].json()["variants"].values()), timeout=20)
        assert len(answers) == len(up) and same_everywhere(answers), (event.asset_id, answers)
    # The overview names the members that are up, and only those.
    for answer in fleet.ask_all("/api/overview"):
        assert answer.status == 200, answer.body[:300]
        members = answer.json()["members"]
        assert len(members) == len(up) and all(m["answered"] for m in members), members
        assert sorted(p for m in members for p in m["partitions"]) == list(range(settings.partitions))


async def _completions_reach(settings, bootstrap, count: int) -> None:
    seen = set()
    async for completion in follow_completions(settings, bootstrap, idle_timeout=120):
        seen.add(variant_key(completion))
        if len(seen) >= count:
            return
