"""Visual LLM Playground — `python app.py --help` lists the flags (each also an env var).

`demo` is available as a module attribute (built on first access from env vars), for
`gradio app.py` reload mode and for Hugging Face Spaces.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Any, Mapping, Sequence

from playground.config import Settings, build_parser, settings_from_args

log = logging.getLogger("playground")


def configure_environment(settings: Settings) -> None:
    """Process-wide switches that must be set before transformers / gradio touch the network."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if settings.offline:
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            os.environ[name] = "1"
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress goes to the header


def with_network_default(settings: Settings, args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """--offline / --no-offline / PLAYGROUND_OFFLINE decide; without them, no network route means offline."""
    from playground.network import network_available

    if args.offline is None and "PLAYGROUND_OFFLINE" not in environ and not network_available():
        log.info("No network route: running offline (embedded models only); --no-offline overrides.")
        return dataclasses.replace(settings, offline=True)
    return settings


def create_demo(settings: Settings, manager: Any = None) -> Any:
    """The queued gradio app around `manager` (a ModelManager; built here from `settings` when not given)."""
    configure_environment(settings)
    from playground.runtime import ModelManager
    from playground.ui import build_app
    from playground.ui.queueing import configure_queue

    return configure_queue(build_app(settings, manager or ModelManager(settings)), settings)


def __getattr__(name: str) -> Any:
    # PEP 562: build `demo` lazily, so importing app.py does no work.
    if name == "demo":
        args = build_parser().parse_args([])
        demo = create_demo(with_network_default(settings_from_args(args), args, os.environ))
        globals()["demo"] = demo
        return demo
    raise AttributeError(name)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.list_models:
        from playground.runtime import PRESETS

        for spec in PRESETS.values():
            print(f"{spec.key:28} {spec.kind:10} {spec.label}")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = with_network_default(settings_from_args(args), args, os.environ)
    from playground.runtime import ModelManager

    manager = ModelManager(settings)
    demo = create_demo(settings, manager)
    if settings.share:
        log.warning("--share creates a PUBLIC gradio.live link: anyone with it can use this machine and model.")
    if settings.preload:
        manager.start_background_load()
    from playground.ui import launch_options

    demo.launch(
        server_name=settings.host, server_port=settings.port, share=settings.share, **launch_options(settings)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
