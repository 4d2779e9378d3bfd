"""Application settings: one frozen dataclass filled from CLI flags, then env vars, then defaults.

Hugging Face Spaces configure apps through environment variables, so every flag has one
(`PLAYGROUND_<FLAG>`). Precedence: explicit CLI flag > env var > default.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

import platformdirs

from playground.limits import Limits, limits_for

PRECISION_CHOICES = ("auto", "none", "bf16", "fp16", "int8", "int4", "nf4")
# The flag and env var were called quantization before they were called precision; both still work.
DEPRECATED_FLAG = "--quantization is deprecated: use --precision (env PLAYGROUND_PRECISION)"
DEPRECATED_ENV = "PLAYGROUND_QUANTIZATION is deprecated: use PLAYGROUND_PRECISION (or --precision)"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEFAULT_MODEL = "smollm2-135m-instruct"
ASSETS = Path(__file__).resolve().parents[1] / "assets"  # texts, datasets and css the project ships
ENV_PREFIX = "PLAYGROUND_"


def default_cache_dir() -> Path:
    """Where converted weights and other derived files live (`PLAYGROUND_CACHE_DIR` overrides)."""
    return Path(platformdirs.user_cache_dir("visual-llm-playground"))


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to know at start-up. Immutable: pass it around freely."""

    model: str = DEFAULT_MODEL
    precision: str = "auto"  # PRECISION_CHOICES; runtime/precision.py resolves it per device
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    offline: bool = False
    cache_dir: Path = Path()
    preload: bool = True
    public: bool = False  # a public deployment: tighter limits (playground.limits.PUBLIC_LIMITS), allowlisted models
    model_allowlist: str = ""  # comma-separated model ids/presets that may be loaded; empty = any (unless public)
    model_memory_mb: int = 0  # the resident models' weights together stay within this (0: at most 4 models)
    presenter_key: str = field(default="", repr=False)  # who may change what everyone sees (playground.sessions); never logged or shown
    engine_url: str = ""  # an OpenAI-compatible serving engine (vLLM ...) for the token-level tabs; "" = none
    engine_model: str = ""  # the model the engine must serve; "" = the first it lists
    engine_timeout_s: float = 30.0  # per engine request (each retried at most twice)
    engine_vocab_size: int = 0  # the engine model's vocabulary size; 0 = ask the engine once
    engine_api_key: str = field(default="", repr=False)  # env PLAYGROUND_ENGINE_API_KEY only (no flag): never logged

    def __post_init__(self) -> None:
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {self.precision!r}")
        if self.device not in DEVICE_CHOICES:
            raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {self.device!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.model_memory_mb < 0:
            raise ValueError(f"model_memory_mb must be 0 (no budget) or more, got {self.model_memory_mb}")
        if self.engine_url and not self.engine_url.startswith(("http://", "https://")):
            raise ValueError(f"engine_url must start with http:// or https://, got {self.engine_url!r}")
        if self.engine_timeout_s <= 0 or self.engine_vocab_size < 0:
            raise ValueError("engine_timeout_s must be > 0 and engine_vocab_size >= 0")
        if self.cache_dir == Path():
            object.__setattr__(self, "cache_dir", default_cache_dir())

    @property
    def limits(self) -> Limits:
        """The per-request caps this server enforces (tighter when public)."""
        return limits_for(self.public)

    def allowlisted_models(self) -> tuple[str, ...]:
        """The names in `model_allowlist` (ModelManager resolves them and adds the configured model)."""
        return tuple(name.strip() for name in self.model_allowlist.split(",") if name.strip())


_HELP = {
    "model": "preset name (see --list-models), Hugging Face hub id, or local folder",
    "precision": "weight precision; auto = nf4 on CUDA, int4 on CPU (CPU: none = exact fp32; int4 = 4-bit decoder weights, 1.9-2.2x faster than fp32 generate on SmolLM2-135M; int8 = dynamic int8, 3x faster, less exact)",
    "device": "where to run the model; auto = cuda when available, else cpu",
    "host": "interface to bind (0.0.0.0 to serve a network)",
    "port": "port to serve on",
    "share": "create a public gradio.live link (anyone with it can use your machine)",
    "offline": "never touch the network: embedded models and the local cache only",
    "cache_dir": "where converted weights are cached",
    "preload": "start loading the model in the background as the app starts",
    "public": "public deployment: tighter per-request limits and only allowlisted models (see docs/limits-and-safety.md)",
    "model_memory_mb": "memory budget for the models held at once (MB of weights; the least recently used go first, "
                       "never the active one); 0 = no budget beyond four models",
    "presenter_key": "the presenter's key, entered once in the page to load models for everyone, publish adapters "
                     "and run a class; without it a loopback-only server treats its local user as the presenter. "
                     "Prefer the env var: a flag shows in the process list",
    "model_allowlist": "comma-separated presets / hub ids / folders visitors may load (the configured model always is); "
                       "empty = any model, or the embedded presets when --public",
    "engine_url": "an OpenAI-compatible serving engine with log-probabilities (vLLM, SGLang, llama.cpp server), "
                  "e.g. http://127.0.0.1:8000: the token-level tabs take their tokens from it (docs/scaling.md); "
                  "its API key only from env PLAYGROUND_ENGINE_API_KEY",
    "engine_model": "the model the engine must serve (default: the first it lists)",
    "engine_timeout_s": "seconds an engine request may take (each retried at most twice)",
    "engine_vocab_size": "the engine model's vocabulary size (default 0: found once through the engine's /detokenize)",
}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r} (use 1/0, true/false, yes/no)")


def _env_defaults(environ: dict[str, str]) -> dict[str, object]:
    """Read `PLAYGROUND_*` env vars, converted to each field's type."""
    values: dict[str, object] = {}
    for field in fields(Settings):
        raw = environ.get(ENV_PREFIX + field.name.upper())
        if raw is None:
            continue
        default = getattr(Settings, field.name, None)
        if isinstance(default, bool):
            values[field.name] = _parse_bool(raw)
        elif isinstance(default, float):
            values[field.name] = float(raw)
        elif isinstance(default, int):
            values[field.name] = int(raw)
        elif field.name == "cache_dir":
            values[field.name] = Path(raw).expanduser()
        else:
            values[field.name] = raw
    if "PLAYGROUND_QUANTIZATION" in environ:
        print(DEPRECATED_ENV, file=sys.stderr)
        values.setdefault("precision", environ["PLAYGROUND_QUANTIZATION"])
    # Spaces and Docker set these for gradio; honour them when ours are absent.
    if "host" not in values and environ.get("GRADIO_SERVER_NAME"):
        values["host"] = environ["GRADIO_SERVER_NAME"]
    if "port" not in values and environ.get("GRADIO_SERVER_PORT"):
        values["port"] = int(environ["GRADIO_SERVER_PORT"])
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Visual LLM Playground: see how a real (quantized) LLM works. "
        "Every flag can also be set with an env var PLAYGROUND_<FLAG>, e.g. PLAYGROUND_MODEL.",
    )
    parser.add_argument("--model", help=_HELP["model"] + f" [env PLAYGROUND_MODEL, default {DEFAULT_MODEL}]")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, help=_HELP["precision"] + " [env PLAYGROUND_PRECISION]")
    parser.add_argument("--quantization", dest="deprecated_quantization", choices=PRECISION_CHOICES,
                        help="deprecated alias of --precision [env PLAYGROUND_QUANTIZATION]")
    parser.add_argument("--device", choices=DEVICE_CHOICES, help=_HELP["device"] + " [env PLAYGROUND_DEVICE]")
    parser.add_argument("--host", help=_HELP["host"] + " [env PLAYGROUND_HOST or GRADIO_SERVER_NAME, default 127.0.0.1]")
    parser.add_argument("--port", type=int, help=_HELP["port"] + " [env PLAYGROUND_PORT or GRADIO_SERVER_PORT, default 7860]")
    parser.add_argument("--share", action=argparse.BooleanOptionalAction, default=None, help=_HELP["share"] + " [env PLAYGROUND_SHARE]")
    parser.add_argument("--offline", action=argparse.BooleanOptionalAction, default=None, help=_HELP["offline"] + " [env PLAYGROUND_OFFLINE]")
    parser.add_argument("--cache-dir", dest="cache_dir", type=Path, help=_HELP["cache_dir"] + f" [env PLAYGROUND_CACHE_DIR, default {default_cache_dir()}]")
    parser.add_argument("--preload", action=argparse.BooleanOptionalAction, default=None, help=_HELP["preload"] + " [env PLAYGROUND_PRELOAD, default on]")
    parser.add_argument("--public", action=argparse.BooleanOptionalAction, default=None, help=_HELP["public"] + " [env PLAYGROUND_PUBLIC, default off]")
    parser.add_argument("--model-allowlist", dest="model_allowlist", help=_HELP["model_allowlist"] + " [env PLAYGROUND_MODEL_ALLOWLIST]")
    parser.add_argument("--model-memory-mb", dest="model_memory_mb", type=int, help=_HELP["model_memory_mb"] + " [env PLAYGROUND_MODEL_MEMORY_MB, default 0]")
    parser.add_argument("--presenter-key", dest="presenter_key", help=_HELP["presenter_key"] + " [env PLAYGROUND_PRESENTER_KEY]")
    parser.add_argument("--engine", dest="engine_url", help=_HELP["engine_url"] + " [env PLAYGROUND_ENGINE_URL]")
    parser.add_argument("--engine-model", dest="engine_model", help=_HELP["engine_model"] + " [env PLAYGROUND_ENGINE_MODEL]")
    parser.add_argument("--engine-timeout-s", dest="engine_timeout_s", type=float,
                        help=_HELP["engine_timeout_s"] + " [env PLAYGROUND_ENGINE_TIMEOUT_S, default 30]")
    parser.add_argument("--engine-vocab-size", dest="engine_vocab_size", type=int,
                        help=_HELP["engine_vocab_size"] + " [env PLAYGROUND_ENGINE_VOCAB_SIZE]")
    parser.add_argument("--list-models", action="store_true", help="print the model presets and exit")
    return parser


def load_settings(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from CLI flags (highest precedence), then env vars, then defaults."""
    return settings_from_args(build_parser().parse_args(argv), environ)


def settings_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    environ = dict(os.environ) if environ is None else environ
    values = _env_defaults(environ)
    deprecated = getattr(args, "deprecated_quantization", None)
    if deprecated is not None:
        print(DEPRECATED_FLAG, file=sys.stderr)
        if args.precision is None:
            values["precision"] = deprecated
    for field in fields(Settings):
        flag_value = getattr(args, field.name, None)
        if flag_value is not None:
            values[field.name] = flag_value
    return Settings(**values)  # type: ignore[arg-type]
