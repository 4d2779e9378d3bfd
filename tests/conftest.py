"""Shared fixtures. Everything runs offline: no test may reach a model hub."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny import make_tiny_llama, make_tiny_tokenizer  # noqa: E402

ARTIFACTS = ROOT / "artifacts"  # screenshots and other test outputs (git-ignored)
DEVICE_TESTS = ROOT / "tests" / "device"


def pytest_addoption(parser):
    """The device suite's options (tests/device, see its conftest). Registered here, in the root conftest, so
    they are known however pytest is started."""
    group = parser.getgroup("device", "the device suite (tests/device): every tab's compute path on one device")
    group.addoption("--device", choices=("cpu", "cuda"), default=None,
                    help="run tests/device on this device (without it, tests/device is not collected)")
    group.addoption("--precision", default="auto",
                    help="the app's --quantization for the device suite's model (auto, none, bf16, int8, nf4, ...)")
    group.addoption("--device-report", type=Path, default=None, metavar="DIR",
                    help="write DIR/device_check.json (rewritten after every test) and DIR/device_check.log")
    group.addoption("--device-quick", action="store_true", help="small sizes, one repeat (the CPU rehearsal)")
    group.addoption("--device-precisions", default="",
                    help="the quantization test: only these precisions (default: every one the app offers)")
    group.addoption("--device-cache-dir", type=Path, default=None,
                    help="where the runtime keeps converted weights (default: the app's cache folder)")
    group.addoption("--device-budget", type=float, default=0.0,
                    help="seconds for the whole device run; tests that would start later are skipped (0: none)")


def pytest_ignore_collect(collection_path, config):
    """tests/device runs only when --device is given, so the normal suite does not run it a second time on the
    CPU (tests/unit/test_device_check.py rehearses it on the CPU in a subprocess)."""
    if config.getoption("--device") is None and collection_path == DEVICE_TESTS:
        return True
    return None


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return make_tiny_llama(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tiny_tokenizer, tmp_path_factory):
    """The tiny model saved as a local transformers folder (safetensors + tokenizer)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def settings():
    """App settings for tests: offline, the default embedded model, the user's normal cache dir
    (or PLAYGROUND_CACHE_DIR), so the one-time GGUF conversion is shared across runs."""
    from playground.config import load_settings

    return load_settings(["--offline"])


@pytest.fixture(scope="session")
def model_manager(settings):
    """One ModelManager for the whole session, so the real model loads once for every test."""
    from transformers.utils import logging as hf_logging

    from playground.runtime import ModelManager

    hf_logging.disable_progress_bar()
    return ModelManager(settings)


@pytest.fixture(scope="session")
def real_model(model_manager):
    """The embedded SmolLM2-135M-Instruct in the default precision (int4 on CPU)."""
    return model_manager.load()


@pytest.fixture(scope="session")
def app_url(settings, model_manager, real_model, tmp_path_factory):
    """The app launched on a free port with the real model already loaded; closed at the end."""
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))
    from playground.ui import build_app, close_app, launch_options
    from playground.ui.queueing import configure_queue

    demo = configure_queue(build_app(settings, model_manager), settings)  # the queue app.py serves with
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                            **launch_options(settings))
    yield url.rstrip("/") + "/"
    close_app(demo)


PRESENTER_KEY = "workshop-key-7f3a"


@pytest.fixture(scope="session")
def classroom_app(settings, tmp_path_factory):
    """A shared server: loopback, but with a presenter key, so only the key holder presents. Its own
    ModelManager (precisions load from the cache in seconds), so no other test's model changes.
    Yields (url, manager)."""
    import dataclasses

    from playground.runtime import ModelManager
    from playground.ui import build_app, close_app, launch_options
    from playground.ui.queueing import configure_queue

    shared = dataclasses.replace(settings, presenter_key=PRESENTER_KEY)
    manager = ModelManager(shared)
    manager.load()
    demo = configure_queue(build_app(shared, manager), shared)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                            **launch_options(shared))
    yield url.rstrip("/") + "/", manager
    close_app(demo)


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium through Playwright (Playwright cannot download browsers here)."""
    import shutil

    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: run `make test` (it installs Debian's chromium) "
                    "or apt-get install chromium")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("console", lambda message: page.console_errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()


@pytest.fixture
def open_tab(page, app_url):
    """open_tab(key) -> the tab's locator: the app opened, the model loaded (its size shows in the header),
    the tab (a TabInfo key) clicked and visible."""
    from playground.ui.tabs import all_tabs

    labels = {info.key: info.label for info in all_tabs()}

    def open_(key: str, timeout: int = 120_000):
        page.goto(app_url)
        page.wait_for_selector("#pg-status >> text=MB in memory", timeout=timeout)
        page.get_by_role("tab", name=labels[key]).click()
        tab = page.locator(f"#tab-{key}")
        tab.wait_for(state="visible")
        return tab

    return open_
