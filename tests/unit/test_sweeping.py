from regen.projections.state import JobState, VideoState
from regen.projections.sweeping import stuck_jobs, videos_over


def job(status: str, started: str | None) -> JobState:
    return JobState(job_id=f"thumbnail:a:{status}:{started}", target_kind="thumbnail", target_id="a",
                    variant="h400.jpg", revision=1, lane="background", status=status,
                    created_at="2026-11-21T10:00:00Z", updated_at=started or "2026-11-21T10:00:00Z",
                    started_at=started)


def test_only_jobs_running_too_long_are_stuck():
    now = 1_763_720_000.0  # 2025-11-21T10:13:20Z
    jobs = [
        job("running", "2025-11-21T09:00:00.000Z"),  # 73 min: stuck
        job("running", "2025-11-21T10:10:00.000Z"),  # 3 min: still fine
        job("completed", "2025-11-21T09:00:00.000Z"),
        job("failed", "2025-11-21T09:00:00.000Z"),
        job("retrying", "2025-11-21T09:00:00.000Z"),  # its retry message is gone
        job("pending", "2025-11-21T09:00:00.000Z"),  # its lane message is gone
        job("pending", "2025-11-21T10:12:00.000Z"),
    ]
    assert sorted(j.status for j in stuck_jobs(jobs, now, stuck_after=600)) == ["pending", "retrying", "running"]


def test_videos_over_the_threshold():
    videos = [VideoState("v1", {str(i): 1 for i in range(51)}), VideoState("v2", {"a": 1})]
    assert [v.video_id for v in videos_over(videos, 50)] == ["v1"]
