"""The Dockerfile and the Spaces front matter, checked statically (no Docker engine here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("pattern", [
    r"^FROM python:3\.11-slim$",
    r"useradd .*--uid 1000 user",
    r"^USER user$",
    r"HOME=/home/user",
    r"^COPY --chown=user ",
    r"^EXPOSE 7860$",
    r"GRADIO_SERVER_NAME=0\.0\.0\.0",
    r"^HEALTHCHECK ",
    r"python -m playground\.runtime\.prepare",
    r'^CMD \["python", "app\.py"',
])
def test_dockerfile_follows_spaces_conventions(pattern):
    assert re.search(pattern, DOCKERFILE, re.MULTILINE), pattern


def test_dockerfile_installs_what_the_makefile_installs():
    makefile = (ROOT / "Makefile").read_text()
    for requirement in ("requirements.txt", "--no-deps -r requirements-models.txt"):
        assert requirement in makefile and requirement in DOCKERFILE
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "artifacts"} <= set(ignored)


def test_readme_front_matter_describes_a_gradio_space():
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("---\n")
    front = readme.split("---\n")[1]
    fields = dict(line.split(": ", 1) for line in front.strip().splitlines())
    import gradio

    assert fields["sdk"] == "gradio" and fields["app_file"] == "app.py"
    assert fields["sdk_version"] == gradio.__version__
    assert fields["python_version"].strip('"') == "3.11"
    assert len(fields["short_description"]) <= 60
    assert {"title", "emoji", "suggested_hardware"} <= set(fields)


def test_prepare_converts_installed_embedded_models(tmp_path, monkeypatch):
    from playground.runtime import prepare

    prepared = []
    monkeypatch.setattr(prepare, "prepare_weights", lambda spec, cache, offline: prepared.append(spec.key) or "ok")
    lines = prepare.prepare_embedded(tmp_path)
    assert "smollm2-135m-instruct" in prepared and "all-minilm-l6-v2" in prepared
    assert len(lines) == len(prepared)
