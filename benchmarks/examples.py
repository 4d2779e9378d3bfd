"""How long a presenter waits: a fresh `app.py --offline` (cold: its model still loading), then Chromium
opens `?tab=<tab>&example=<first example>` for every tab and we time until the example's note and
outputs are on the page. `python -m benchmarks.examples` (needs Debian's chromium)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playground.ui.examples import load_example_file  # noqa: E402

TABS = ("tokenization", "attention", "sampling", "speculative", "rag", "lora", "calibration", "model")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_page(url: str, timeout: float = 240) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            urllib.request.urlopen(url, timeout=2)
            return time.monotonic() - start
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


def main() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    app = subprocess.Popen([sys.executable, "app.py", "--offline", "--port", str(port)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        serving = wait_for_page(url)
        print(f"app.py --offline serves the page after {serving:.1f} s (process start to first HTTP answer)")
        print("| tab | example | page open -> cached example shown |\n|---|---|---|")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for key in TABS:
                example = load_example_file(key).examples[0]
                begin = time.monotonic()
                page.goto(f"{url}?tab={key}&example={example.name}")
                page.wait_for_function(
                    "(key) => document.getElementById('pg-example-note-' + key)?.innerText?.includes('Example')",
                    arg=key, timeout=120_000)
                print(f"| {key} | {example.title} | {time.monotonic() - begin:.1f} s |")
            browser.close()
        print(f"(all within {time.monotonic() - started:.0f} s of starting the app)")
    finally:
        app.terminate()
        app.wait(timeout=30)


if __name__ == "__main__":
    main()
