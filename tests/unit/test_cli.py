"""The CLI, run as a user runs it: a subprocess, exit codes, readable output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image


def regen(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "regen.cli.main", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_help_lists_the_commands():
    result = regen("--help")
    assert result.returncode == 0
    for command in ("broker", "worker", "import", "publish", "status", "render", "config", "demo"):
        assert command in result.stdout


def test_usage_error_exits_2():
    result = regen("status", "asset")
    assert result.returncode == 2
    assert "Missing argument" in result.stderr


def test_config_prints_variables_and_hides_the_token():
    result = regen("config", env={"REGEN_WEB_TOKEN": "topsecret", "REGEN_RENDER_PROCESSES": "3"})
    assert result.returncode == 0
    assert "REGEN_RENDER_PROCESSES" in result.stdout and "topsecret" not in result.stdout


def test_bad_setting_is_one_line_and_exit_1():
    result = regen("config", env={"REGEN_RENDER_PROCESSES": "lots"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["regen: error: REGEN_RENDER_PROCESSES='lots' is not valid: "
                                                  "invalid literal for int() with base 10: 'lots'"]


def test_render_thumbnail_offline(corpus: Path, tmp_path: Path):
    out = tmp_path / "t.webp"
    result = regen("render", "thumbnail", str(corpus / "photos" / "Portrait_8.jpg"), "--variant", "h400.webp",
                   "-o", str(out))
    assert result.returncode == 0, result.stderr
    with Image.open(out) as im:
        assert im.format == "WEBP" and im.height == 400 and im.width < 400


def test_render_of_a_corrupt_file_says_why(corpus: Path, tmp_path: Path):
    result = regen("render", "thumbnail", str(corpus / "bad" / "truncated_jpeg.jpg"), "-o", str(tmp_path / "x.jpg"))
    assert result.returncode == 1
    assert "truncated_jpeg.jpg" in result.stderr and "truncated" in result.stderr


def test_status_without_a_worker_says_what_to_do():
    result = regen("status", "asset", "a1", env={"REGEN_WEB_PORT": "1"})
    assert result.returncode == 1
    assert "regen worker" in result.stderr


def test_import_outside_media_roots_is_refused(tmp_path: Path):
    result = regen("import", str(tmp_path), env={"REGEN_MEDIA_ROOTS": "/nonexistent-root"})
    assert result.returncode == 1
    assert "REGEN_MEDIA_ROOTS" in result.stderr
