"""One HTTP client for a serving engine that speaks the OpenAI-compatible API with log-probabilities
(vLLM, SGLang, llama.cpp server, TGI's /v1 routes): models, tokenize/detokenize, completions with
per-token top-N log-probabilities (whole or streamed) and the Prometheus /metrics text.

Every call has a timeout and a bounded number of retries (connection failures, timeouts and 502/503/504
only: a 4xx is the caller's mistake and never retried), so a dead engine costs a visitor at most
(retries + 1) x timeout and never hangs the queue. The API key travels in the Authorization header only;
it is never logged, shown or put in an error message.

    >>> EngineClient("http://127.0.0.1:8000/").url
    'http://127.0.0.1:8000'
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import httpx

from playground.engine.errors import (
    EngineError,
    EngineModelMismatch,
    EngineResponseError,
    EngineTimeout,
    EngineUnreachable,
    LogprobsLimitError,
)

RETRIED_STATUS = frozenset({502, 503, 504})
STATUS_TIMEOUT_S = 3.0  # the header's probe: one try
STATUS_TTL_S = 5.0  # the header asks at most this often (every page load and refresh calls status())
TOKEN_ID_PREFIX = "token_id:"  # vLLM's return_tokens_as_token_ids spelling of a token


@dataclass(frozen=True)
class EngineStatus:
    """What the header shows: which engine, which model, does it answer."""

    url: str
    model: str | None  # the served model (None when the engine did not answer)
    reachable: bool
    message: str  # "answers in 12 ms" or what went wrong
    latency_ms: float | None = None


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token with the engine's top-N alternatives (natural-log probabilities)."""

    token_id: int
    logprob: float
    top: dict[int, float]  # token id -> log p, the engine's top N (may include token_id)


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: tuple[TokenLogprobs, ...]
    finish_reason: str | None


def parse_token(token: str) -> int:
    """'token_id:1234' -> 1234 (what vLLM returns with return_tokens_as_token_ids)."""
    if not token.startswith(TOKEN_ID_PREFIX):
        raise EngineResponseError(f"the engine returned a token as text ({token!r}), not as an id: it does not "
                                  "support return_tokens_as_token_ids (vLLM and SGLang do)")
    return int(token[len(TOKEN_ID_PREFIX):])


class EngineClient:
    """A thread-safe client for one engine URL (httpx pools the connections: 50 visitors share them)."""

    def __init__(self, url: str, api_key: str = "", model: str = "", timeout_s: float = 30.0,
                 connect_timeout_s: float = 3.0, retries: int = 2, max_connections: int = 64) -> None:
        self.url = url.rstrip("/")
        self._requested_model = model  # "" = whatever the engine serves first
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout,
                                  limits=httpx.Limits(max_connections=max_connections))
        self._model: str | None = None
        self._status: tuple[float, EngineStatus] | None = None  # (when, what) of the last probe
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"EngineClient({self.url!r}, model={self._requested_model or self._model!r})"

    def close(self) -> None:
        self._http.close()

    # -- transport ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 quick: bool = False) -> httpx.Response:
        """One call with bounded retries; raises EngineError subclasses with the engine's URL in them.
        quick: one try within STATUS_TIMEOUT_S (the header's probe must never hold a page)."""
        last: EngineError | None = None
        timeout = httpx.Timeout(STATUS_TIMEOUT_S) if quick else self.timeout
        for attempt in range(1 if quick else self.retries + 1):
            if attempt:
                time.sleep(min(0.25 * 2 ** (attempt - 1), 2.0))  # 0.25 s, 0.5 s, ... between tries
            try:
                response = self._http.request(method, path, json=body, timeout=timeout)
            except httpx.TimeoutException:
                last = EngineTimeout(f"The engine at {self.url} did not answer {path} within "
                                     f"{timeout.read:g} s ({_tries(attempt + 1)}). It may be overloaded.")
                continue
            except httpx.TransportError as error:
                last = EngineUnreachable(f"Cannot reach the engine at {self.url} ({type(error).__name__}; "
                                         f"{_tries(attempt + 1)}). Is it running?")
                continue
            if response.status_code in RETRIED_STATUS:
                last = EngineResponseError(f"The engine at {self.url} answered {path} with HTTP "
                                           f"{response.status_code} ({_tries(attempt + 1)}).")
                continue
            if response.status_code >= 400:
                raise self._http_error(path, response, body)
            return response
        assert last is not None
        raise last

    def _http_error(self, path: str, response: httpx.Response, body: dict[str, Any] | None) -> EngineError:
        detail = _error_detail(response)
        lowered = detail.lower()
        if response.status_code == 401:
            return EngineResponseError(f"The engine at {self.url} refused the API key (HTTP 401): set "
                                       "PLAYGROUND_ENGINE_API_KEY to the key it expects.")
        if "logprobs" in lowered and ("max" in lowered or "greater" in lowered or "exceed" in lowered):
            asked = (body or {}).get("logprobs")
            return LogprobsLimitError(f"The engine at {self.url} returns fewer log-probabilities than the "
                                      f"{asked} asked for: {detail} (vLLM: start it with --max-logprobs {asked}).")
        if response.status_code == 404 and "model" in lowered:
            return EngineModelMismatch(f"The engine at {self.url} does not serve the model "
                                       f"{(body or {}).get('model')!r}: {detail}")
        return EngineResponseError(f"The engine at {self.url} answered {path} with HTTP "
                                   f"{response.status_code}: {detail}")

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._request(method, path, body)
        try:
            data = response.json()
        except ValueError as error:
            raise EngineResponseError(f"The engine at {self.url} answered {path} with something that is not "
                                      f"JSON ({response.text[:80]!r}).") from error
        if not isinstance(data, dict):
            raise EngineResponseError(f"The engine at {self.url} answered {path} with JSON of an unexpected shape.")
        return data

    # -- what it serves -------------------------------------------------------------------------

    def served_models(self, quick: bool = False) -> list[str]:
        response = self._request("GET", "/v1/models", quick=quick)
        try:
            data = response.json()
        except ValueError as error:
            raise EngineResponseError(f"The engine at {self.url} listed its models in something that is not JSON.") from error
        try:
            return [str(entry["id"]) for entry in data["data"]]
        except (KeyError, TypeError) as error:
            raise EngineResponseError(f"The engine at {self.url} listed its models in an unexpected shape.") from error

    def model(self, quick: bool = False) -> str:
        """The model every request names: the one asked for (checked against /v1/models), else the first
        the engine lists. Cached after the first success."""
        with self._lock:
            if self._model is not None:
                return self._model
        return self._pick_model(self.served_models(quick))

    def _pick_model(self, served: list[str]) -> str:
        if not served:
            raise EngineModelMismatch(f"The engine at {self.url} serves no model.")
        if self._requested_model and self._requested_model not in served:
            raise EngineModelMismatch(f"The engine at {self.url} serves {', '.join(served)}, not "
                                      f"{self._requested_model!r} (PLAYGROUND_ENGINE_MODEL).")
        with self._lock:
            self._model = self._requested_model or served[0]
            return self._model

    def status(self) -> EngineStatus:
        """Does it answer, and with which model (never raises: the header shows the message). One quick
        /v1/models, at most every STATUS_TTL_S; a changed list is checked against the chosen model again."""
        with self._lock:
            cached = self._status
            if cached is not None and time.monotonic() - cached[0] < STATUS_TTL_S:
                return cached[1]
        started = time.perf_counter()
        try:
            served = self.served_models(quick=True)
            with self._lock:
                self._model = None  # the engine may have restarted with another model: choose again
            model = self._pick_model(served)
            latency = 1000 * (time.perf_counter() - started)
            status = EngineStatus(self.url, model, True, f"answers in {latency:.0f} ms", latency)
        except EngineError as error:
            status = EngineStatus(self.url, None, False, str(error))
        with self._lock:
            self._status = (time.monotonic(), status)
        return status

    # -- tokens ---------------------------------------------------------------------------------

    def tokenize(self, text: str | None = None, messages: Sequence[dict[str, str]] | None = None,
                 add_special_tokens: bool = False, add_generation_prompt: bool = True) -> tuple[list[int], list[str] | None]:
        """(ids, the tokenizer's own strings when the engine returns them). messages: apply the engine's
        chat template (with the assistant header when add_generation_prompt)."""
        body: dict[str, Any] = {"model": self.model(), "return_token_strs": True}
        if messages is not None:
            body.update(messages=list(messages), add_generation_prompt=add_generation_prompt)
        else:
            body.update(prompt=text or "", add_special_tokens=add_special_tokens)
        data = self._json("POST", "/tokenize", body)
        try:
            ids = [int(token) for token in data["tokens"]]
        except (KeyError, TypeError, ValueError) as error:
            raise EngineResponseError(f"The engine at {self.url} has no usable /tokenize (vLLM and SGLang do).") from error
        strings = data.get("token_strs")
        return ids, [str(s) for s in strings] if isinstance(strings, list) and len(strings) == len(ids) else None

    def detokenize(self, ids: Sequence[int]) -> str:
        data = self._json("POST", "/detokenize", {"model": self.model(), "tokens": [int(i) for i in ids]})
        return str(data.get("prompt", ""))

    # -- completions ----------------------------------------------------------------------------

    def _completion_body(self, prompt: Sequence[int] | Sequence[Sequence[int]], max_tokens: int, logprobs: int,
                         temperature: float, seed: int | None, echo: bool, stream: bool,
                         extra: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model(), "prompt": [list(map(int, p)) for p in prompt]
                                if prompt and not isinstance(prompt[0], int) else [int(i) for i in prompt],
                                "max_tokens": max_tokens, "logprobs": logprobs, "temperature": temperature,
                                "echo": echo, "stream": stream, "return_tokens_as_token_ids": True}
        if seed is not None:
            body["seed"] = seed
        body.update(extra or {})  # sampling fields beyond temperature (top_k, top_p, min_p, repetition_penalty)
        return body

    def complete(self, prompt: Sequence[int] | Sequence[Sequence[int]], max_tokens: int = 1, logprobs: int = 20,
                 temperature: float = 0.0, seed: int | None = None, echo: bool = False,
                 extra: dict[str, Any] | None = None) -> list[Completion]:
        """One completion per prompt (token ids, or a list of them), each token with its top-`logprobs`."""
        body = self._completion_body(prompt, max_tokens, logprobs, temperature, seed, echo, stream=False, extra=extra)
        data = self._json("POST", "/v1/completions", body)
        self._check_model(data)
        try:
            choices = sorted(data["choices"], key=lambda choice: int(choice.get("index", 0)))
            return [self._completion(choice, logprobs, echo) for choice in choices]
        except EngineError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise EngineResponseError(f"The engine at {self.url} returned completions without log-probabilities "
                                      f"({type(error).__name__}: {error}).") from error

    def stream(self, prompt: Sequence[int], max_tokens: int, logprobs: int = 5, temperature: float = 0.0,
               seed: int | None = None) -> Iterator[TokenLogprobs]:
        """Generated tokens one by one as the engine sends them (server-sent events); the read timeout
        applies between two events, so a stalled engine ends the stream with EngineTimeout."""
        body = self._completion_body(prompt, max_tokens, logprobs, temperature, seed, echo=False, stream=True)
        try:
            with self._http.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._http_error("/v1/completions", response, body)
                for line in response.iter_lines():
                    if not line.startswith("data:") or line.strip() == "data: [DONE]":
                        continue
                    event = json.loads(line[len("data:"):])
                    self._check_model(event)
                    for choice in event.get("choices", ()):
                        yield from self._completion(choice, logprobs, echo=False).tokens
        except httpx.TimeoutException as error:
            raise EngineTimeout(f"The engine at {self.url} stopped sending tokens for "
                                f"{self.timeout.read:g} s.") from error
        except httpx.TransportError as error:
            raise EngineUnreachable(f"Lost the engine at {self.url} mid-answer ({type(error).__name__}).") from error

    def _check_model(self, data: dict[str, Any]) -> None:
        answered = data.get("model")
        if answered is not None and self._model is not None and answered != self._model:
            raise EngineModelMismatch(f"The engine at {self.url} lists {self._model!r} but answered as "
                                      f"{answered!r}: it serves another model than it claims.")

    def _completion(self, choice: dict[str, Any], asked: int, echo: bool) -> Completion:
        """One choice -> Completion. With echo the prompt's tokens come first (the very first has no
        log-prob: nothing precedes it); the caller knows the prompt's length and slices."""
        logprobs = choice.get("logprobs") or {}
        tokens, values, tops = logprobs.get("tokens"), logprobs.get("token_logprobs"), logprobs.get("top_logprobs")
        if tokens is None or values is None or tops is None:
            raise EngineResponseError(f"The engine at {self.url} returned no log-probabilities "
                                      "(does it support the `logprobs` field of /v1/completions?).")
        parsed = []
        for index, (token, value, top) in enumerate(zip(tokens, values, tops)):
            alternatives = {parse_token(t): float(v) for t, v in (top or {}).items()}
            if asked and top is not None and len(alternatives) < asked:
                raise LogprobsLimitError(f"The engine at {self.url} returned {len(alternatives)} log-probabilities "
                                         f"for token {index}, fewer than the {asked} asked for.")
            parsed.append(TokenLogprobs(parse_token(token), float("nan") if value is None else float(value),
                                        alternatives))
        return Completion(str(choice.get("text", "")), tuple(parsed), choice.get("finish_reason"))

    # -- metrics --------------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """The Prometheus /metrics text as {name{labels}: value} (samples only, comments dropped)."""
        text = self._request("GET", "/metrics").text
        values: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
        return values


def _tries(count: int) -> str:
    return "1 try" if count == 1 else f"{count} tries"


def _error_detail(response: httpx.Response) -> str:
    """The engine's own error sentence (OpenAI shape {"error": {"message"}}, vLLM {"message"}, FastAPI {"detail"})."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        for key in ("message", "detail", "error"):
            if data.get(key):
                return str(data[key])[:300]
    return str(data)[:300]
