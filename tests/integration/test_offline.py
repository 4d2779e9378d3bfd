"""`python app.py --offline` with the network blocked at the socket level: the app starts, the page
loads, the embedded model answers, and no connection to (or name lookup of) a non-loopback host is
ever attempted — neither by the server nor by the page in Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

# Loaded by Python at start-up from PYTHONPATH: every connect / connect_ex / getaddrinfo to a host that
# is not loopback is written to $PG_NET_LOG and fails as an unreachable network would.
SITECUSTOMIZE = textwrap.dedent('''
    import os, socket

    _LOG = os.environ["PG_NET_LOG"]
    _LOCAL = ("127.", "::1", "localhost", "0.0.0.0", "::")

    def _is_local(host):
        return host is None or str(host).startswith(_LOCAL) or str(host) == ""

    def _blocked(kind, target):
        with open(_LOG, "a") as log:
            log.write(f"{kind} {target!r}\\n")
        return OSError(101, f"Network is unreachable (blocked by the offline test): {target!r}")

    _connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            raise _blocked("connect", address)
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            _blocked("connect_ex", address)
            return 101
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host if not isinstance(host, bytes) else host.decode()):
            raise socket.gaierror(-3, str(_blocked("getaddrinfo", host)))
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    with open(_LOG + ".armed", "a") as armed:  # which processes ran with the guard
        armed.write(f"{os.getpid()}\\n")
''')


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("no-network")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = folder / "network-attempts.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(PYTHONPATH=str(folder), PG_NET_LOG=str(log), GRADIO_TEMP_DIR=str(folder / "gradio"))
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # the app itself must switch analytics off
    return env, log


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_guard_catches_a_network_attempt(blocked_env):
    """The test can fail: the same guard in a process that does try the network records it."""
    env, log = blocked_env
    code = "import urllib.request\ntry:\n urllib.request.urlopen('http://huggingface.co', timeout=2)\nexcept OSError:\n pass"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert "huggingface.co" in log.read_text()
    log.unlink()


@pytest.fixture(scope="module")
def offline_app(blocked_env):
    env, log = blocked_env
    port = free_port()
    process = subprocess.Popen([sys.executable, "app.py", "--offline", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py --offline exited {process.returncode}:\n{process.stdout.read()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("app.py --offline did not serve the page within 240 s")
    assert str(process.pid) in Path(str(log) + ".armed").read_text().split()  # the app runs guarded
    yield url, log
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_for_model(client, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, status, _ = client.predict(api_name="/model_status")
        if status["model"] and status["loading"]["phase"] != "loading":
            return status
        assert status["loading"]["phase"] != "failed", status["loading"]
        time.sleep(2)
    pytest.fail("the embedded model did not load offline")


def test_offline_app_serves_everything_without_the_network(offline_app, page):
    from gradio_client import Client

    url, log = offline_app
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
    page.goto(url + "?tab=sampling&example=paris")
    page.wait_for_function("document.querySelector('#sampling-stages')?.innerText?.includes('Paris')",
                           timeout=120_000)
    assert "Needs a network" in page.locator("#pg-offline").inner_text()  # the page says what is missing

    client = Client(url, verbose=False)
    status = wait_for_model(client)
    assert "embedded" in status["model"]["label"]
    _, _, _, data = client.predict("The capital of France is", False, 0.0, 0, 1.0, 0.0, 1.0, 0, 5,
                                   api_name="/next_token")
    assert data["tokens"][0]["text"] == " Paris"
    tokens = client.predict("Offline tokens", ["model", "minilm"], "", False, api_name="/tokenize")
    assert set(tokens[3]["tokenizers"]) == {"model", "minilm"}

    page.reload()
    page.wait_for_selector("#pg-status >> text=MB in memory", timeout=120_000)
    assert outside == [], f"the page asked the network for {outside}"
    attempts = log.read_text() if log.exists() else ""
    assert attempts == "", f"the server tried the network:\n{attempts}"
