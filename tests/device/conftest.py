"""The device suite: every tab's compute path on one device and precision, with invariants checked and speed
measured. Collected only when --device is given (tests/conftest.py registers the options):

    python -m pytest tests/device --device cuda --precision nf4 --device-report DIR -s --timeout 150

and rehearsed on the CPU (tests/unit/test_device_check.py runs a quick subset in the slow suite):

    python -m pytest tests/device --device cpu --device-quick --device-report DIR

It loads the embedded default model (SmolLM2-135M-Instruct, converted by the runtime into --device-cache-dir,
default the app's cache folder) through `playground.runtime.ModelManager`, then runs one test per tab area
through the project's own compute modules (tests/device/test_device_<area>.py), in the order of
harness.SECTIONS (load first). Each test records its checks and metrics into its section of the report
(harness.Section); a failed check fails the test when it ends, a warning does not (see harness.py).

--device-report DIR: DIR/device_check.json (the shape of docs/device/h200_nf4.json: meta, finished, exit_code,
sections) is rewritten after every test, so a killed run still leaves its numbers; DIR/device_check.log keeps
every line and the libraries' warnings. A table of every check is printed at the end. Scratch files (RAG
embeddings, the LoRA adapter, score caches) go to a temporary folder that is removed at the end.

Time: pytest-timeout's --timeout N ends a test that hangs (the old --section-timeout); --device-budget S skips
the tests that would start later than S seconds after the start (the old --budget). SIGTERM (what `timeout`
sends) interrupts the run like Ctrl-C: the table and the report are still written (exit_code 2).
Exit status: pytest's (0 = no check failed, warnings allowed; 1 = a check failed or a test raised).

Imports nothing from playground.ui / playground.figures (the GPU machine has no gradio and no plotly).
"""

from __future__ import annotations

import platform
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from harness import (
    FULL,
    QUICK,
    SECTIONS,
    Output,
    Report,
    Run,
    Section,
    command_line,
    cuda_mb,
    environment,
    free_memory,
    print_table,
)

HERE = Path(__file__).resolve().parent
STATE: dict[str, Any] = {}  # the run's Report, Output and scratch folder (one pytest session per process)


class ChecksFailed(AssertionError):
    """A test ended with failed checks (recorded in its section; listed in the message)."""


def section_key(item: pytest.Item) -> str | None:
    """`test_<key>` in tests/device records into the section <key>; None for any other test."""
    if Path(str(item.fspath)).resolve().parent != HERE:
        return None
    return item.name.split("[", 1)[0].removeprefix("test_")


def device_options(config: pytest.Config) -> dict[str, Any]:
    return {"device": config.getoption("--device") or "cpu", "precision": config.getoption("--precision"),
            "report": config.getoption("--device-report"), "quick": config.getoption("--device-quick"),
            "precisions": config.getoption("--device-precisions"),
            "cache_dir": config.getoption("--device-cache-dir"), "budget": config.getoption("--device-budget")}


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--device") is None:  # tests/device named without --device
        raise pytest.UsageError("tests/device is the device suite: pass --device cpu or --device cuda "
                                "(e.g. pytest tests/device --device cpu --device-quick)")
    options = device_options(config)
    out = options["report"].resolve() if options["report"] else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    output = Output(out / "device_check.log" if out else None)
    scratch = Path(tempfile.mkdtemp(prefix="device-check-"))
    meta: dict[str, Any] = {"command": command_line(), "arguments": {k: str(v) for k, v in options.items()},
                            "started": time.strftime("%F %T"), "environment": environment(), "scratch": str(scratch)}
    report = Report(out / "device_check.json" if out else None,
                    [Section(key, title, say=output.say) for key, title in SECTIONS], meta, time.perf_counter())
    STATE.update(report=report, output=output, scratch=scratch, options=options)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.enable_propagation()  # transformers' warnings reach the log's handler too
    if threading.current_thread() is threading.main_thread():
        def terminate(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"terminated by signal {signum}")

        signal.signal(signal.SIGTERM, terminate)


def pytest_report_header(config: pytest.Config) -> str:
    options, env = STATE["options"], STATE["report"].meta["environment"]
    return (f"device suite: {options['device']} / {options['precision']}{' (quick)' if options['quick'] else ''} on "
            f"{env.get('gpu', platform.processor() or platform.machine())}; torch {env['versions']['torch']} "
            f"(CUDA {env['torch_cuda']}), transformers {env['versions']['transformers']}, bitsandbytes "
            f"{env['versions']['bitsandbytes']}, peft {env['versions']['peft']}; report {options['report']}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The device tests run in the report's order (load first); other tests keep their order, before them."""
    order = {key: index for index, (key, _) in enumerate(SECTIONS)}
    items.sort(key=lambda item: -1 if section_key(item) is None else order.get(section_key(item), len(order)))


@pytest.fixture(scope="session")
def run() -> Run:
    """The app's settings and ModelManager on --device / --precision (offline); the model loads on first use."""
    from playground.config import load_settings
    from playground.runtime import ModelManager

    options = STATE["options"]
    cache_dir = options["cache_dir"] or load_settings(["--offline"]).cache_dir
    settings = load_settings(["--offline", "--no-preload", "--device", options["device"], "--precision",
                              options["precision"], "--cache-dir", str(Path(cache_dir).resolve())], environ={})
    STATE["report"].meta["cache_dir"] = str(settings.cache_dir)
    torch.manual_seed(0)
    return Run(QUICK if options["quick"] else FULL, STATE["scratch"], settings, ModelManager(settings, max_cached=8),
               options["device"], STATE["output"].say, options["precisions"])


@pytest.fixture
def section(request: pytest.FixtureRequest) -> Section:
    """This test's section of the report (test_<key> -> <key>)."""
    key = section_key(request.node)
    return STATE["report"].section(key)


def pytest_runtest_setup(item: pytest.Item) -> None:
    key, budget = section_key(item), STATE["options"]["budget"]
    if key is None:
        return
    STATE["output"].say(f"\n== {key}: {STATE['report'].section(key).title}")
    left = budget - (time.perf_counter() - STATE["report"].started) if budget > 0 else float("inf")
    if left < 10:
        pytest.skip(f"the run's budget of {budget:.0f} s is spent")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    key = section_key(item)
    if key is None:
        return (yield)
    cuda = STATE["options"]["device"] == "cuda"
    section = STATE["report"].section(key)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        result = yield
    finally:
        if cuda:
            peak = cuda_mb(torch.cuda.max_memory_allocated())
            section.peak_cuda_mb = max(peak, section.peak_cuda_mb or 0.0)
        free_memory(STATE["options"]["device"])
    failures = section.failures()
    if failures:
        raise ChecksFailed(f"{len(failures)} failed check(s) in {key}:\n" + "\n".join(
            f"  {check.name}: {check.value!r} [expected {check.expected}] {check.detail}" for check in failures))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    key = section_key(item)
    if key is None or report.when == "teardown" and report.passed:
        return report
    section = STATE["report"].section(key)
    if report.when == "call":
        section.seconds += report.duration
    if report.skipped:
        section.status, section.error = "skipped", str(call.excinfo.value) if call.excinfo else "skipped"
    elif report.failed and not (call.excinfo is not None and call.excinfo.errisinstance(ChecksFailed)):
        error = call.excinfo.value if call.excinfo is not None else None
        section.status = "error"
        section.error = f"{type(error).__name__}: {error}"[:2000] if error is not None else "error"
        section.traceback = report.longreprtext
    elif section.status == "not run":
        section.status = "pass"  # settled from its checks below
    section.settle()
    if report.when == "call" or report.failed or report.skipped:
        peak = "" if section.peak_cuda_mb is None else f", peak CUDA memory {section.peak_cuda_mb:.0f} MB"
        STATE["output"].say(f"    -> {section.status.upper()} in {section.seconds:.1f} s{peak}")
        STATE["report"].write()
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = STATE["report"]
    ran = [s for s in report.sections if s.status != "not run"]
    peaks = [s.peak_cuda_mb for s in ran if s.peak_cuda_mb is not None]
    memory = f"; torch.cuda.max_memory_allocated (max over sections) {max(peaks):.0f} MB" if peaks else ""
    wrote = f"; wrote {report.path} and {report.path.with_name('device_check.log')}" if report.path else ""
    STATE["summary"] = (f"wall time {time.perf_counter() - report.started:.1f} s{memory}; exit status "
                        f"{int(exitstatus)}{wrote}")
    report.write(final=True, code=int(exitstatus))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    ran = [s for s in STATE["report"].sections if s.status != "not run"]
    terminalreporter.section("device suite")
    print_table(STATE["output"].say, ran)
    STATE["output"].say(STATE.get("summary", ""))


def pytest_unconfigure(config: pytest.Config) -> None:
    if "output" in STATE:
        STATE["output"].close()
        shutil.rmtree(STATE["scratch"], ignore_errors=True)
        STATE.clear()
