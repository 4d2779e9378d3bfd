"""Serving tab: how one model serves many users. The batching curve measured live on the loaded model,
the KV cache measured against its formula and the free memory, static vs continuous batching simulated
on the measured step costs, and a paged KV cache's block table. Handlers are thin adapters over
playground.serving and playground.figures.serving."""

from __future__ import annotations

import time
from typing import Any, Callable

import gradio as gr
import torch
from transformers import DynamicCache

from playground import serving as srv
from playground.attention.shape import AttentionShape
from playground.engine.metrics import EngineLoad, engine_load
from playground.figures import serving as figures
from playground.figures.style import empty_figure
from playground.generation import encode_prompt
from playground.limits import shown, whole_number_in
from playground.runtime import LoadedModel
from playground.serving.batching import model_device
from playground.ui.common import StopSwitches, explanation
from playground.ui.context import AppContext
from playground.ui.errors import user_errors

EXPLANATION = r"""
### What you are seeing: one model, many users
**Decoding is memory-bound.** Each decode step streams every weight of the model from memory to make
one token per sequence. With a batch of $B$ sequences the same weight read makes $B$ tokens, so the step
time $t(B)$ barely grows at first: total throughput $B / t(B)$ rises almost $B$-fold while each user
still gets $1 / t(B)$ tokens/s. It stops when the step becomes compute-bound ($B \times 2 \times$
parameters FLOPs) or the attention over the growing cache dominates; then $t(B)$ grows with $B$.
The curve below is **measured now** on the loaded model: real batched decode steps with a KV cache.

**The KV cache is the price.** Every cached token of every sequence keeps its keys and values in every layer:
$\text{bytes} = 2 \times \text{layers} \times \text{kv\_heads} \times \text{head\_dim} \times
\text{bytes per value} \times \text{tokens} \times \text{batch}$. We sum the real cache tensors' sizes and
compare; the free memory of the device is the ceiling that limits batch × context.

**Static vs continuous batching** (a *simulation* driven by the measured step costs): static batching
runs a batch until its longest request ends, so short requests leave idle, padded rows and the queue waits;
continuous batching refills a slot the step after a request finishes.

**Paged KV cache:** instead of reserving each request's maximum length up front, the cache is cut into
blocks of a few tokens taken from a shared pool as sequences grow (a block table maps logical to physical
blocks). Waste falls from $\sum_i (\text{reserve} - n_i)$ to at most one partly filled block per request.

**Takeaway:** batching is nearly free while decoding is memory-bound; memory for the KV cache, and how
well the scheduler keeps the batch full, decide how many users one model serves.
"""

DEFAULT_PROMPT = "The sky is blue because"
BATCH_CHOICES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_REQUESTS = "40, 8, 25, 60, 12, 33, 5, 18, 50, 10, 28, 15"
BATCHING_HEADERS = ["batch", "step (ms, median)", "total tok/s", "tok/s per sequence", "x batch-1 total",
                    "KV cache (MB)", "KV = formula?"]
SCHEDULE_HEADERS = ["policy", "total time (s)", "useful tok/s", "mean wait (s)", "mean latency (s)", "steps",
                    "slot use"]
EMPTY_MESSAGE = "Press “Measure & simulate” to time batched decode steps on the loaded model (seconds on a CPU)."

ENGINE_METRICS_SECONDS = 5.0  # how often an open page re-reads the engine's load (one read per interval per server)


def batching_rows(curve: srv.BatchingCurve) -> list[list[Any]]:
    return [[p.batch, round(p.step_seconds * 1000, 2), round(p.total_tokens_per_second, 1),
             round(p.sequence_tokens_per_second, 1), round(curve.speedup(p), 2), round(p.kv.measured_bytes / 1e6, 3),
             "yes" if p.kv.measured_bytes == p.kv.formula_bytes else f"no ({p.kv.formula_bytes:,} B)"]
            for p in curve.points]


def schedule_rows(*schedules: srv.Schedule) -> list[list[Any]]:
    return [[s.policy, round(s.total_seconds, 3), round(s.throughput, 1), round(s.mean_waiting_seconds, 3),
             round(s.mean_latency_seconds, 3), s.total_steps, f"{s.slot_utilisation:.0%}"] for s in schedules]


def batching_summary(curve: srv.BatchingCurve, loaded: LoadedModel) -> str:
    first, last = curve.points[0], curve.points[-1]
    return (f"**Measured on {loaded.spec.label}** ({loaded.precision.label}, {curve.device}): batch {first.batch} → "
            f"{last.batch} multiplies total throughput by **{curve.speedup(last) / first.batch:.1f}x** "
            f"({first.total_tokens_per_second:,.0f} → {last.total_tokens_per_second:,.0f} tok/s) while each "
            f"sequence goes from {first.sequence_tokens_per_second:,.1f} to {last.sequence_tokens_per_second:,.1f} "
            f"tok/s (step {first.step_seconds * 1000:.1f} → {last.step_seconds * 1000:.1f} ms). Timings are noisy "
            "when other visitors use the model.")


class ServingHandlers:
    """The tab's event handlers as plain methods; one cancel event per browser session (the Stop button)."""

    def __init__(self, ctx: AppContext, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.stops = StopSwitches()
        self._clock = clock
        self._engine_read: tuple[float, EngineLoad] | None = None  # (when, what): one /metrics read per interval

    def engine_note(self) -> str:
        """What the tab says when an engine is connected: the curve is the in-process model's, never the engine's."""
        if self.ctx.engine is None:
            return ""
        return (f"\n\nℹ️ An engine is connected ({shown(self.ctx.engine.client.url)}): this curve is the "
                "in-process model's; the engine's batching curve is not measured here (its live load is under "
                "**The engine, live**).")

    @user_errors
    def engine_metrics(self) -> tuple[str, dict[str, Any]]:
        """The connected engine's live load from its /metrics (read at most once per ENGINE_METRICS_SECONDS for
        the whole server, however many pages ask)."""
        if self.ctx.engine is None:
            raise srv.ServingInputError("No engine is connected: start the app with --engine URL.")
        now = self._clock()
        if self._engine_read is None or now - self._engine_read[0] >= ENGINE_METRICS_SECONDS:
            self._engine_read = (now, engine_load(self.ctx.engine.client))
        load = self._engine_read[1]
        text = (f"**{shown(self.ctx.engine.client.url)}** now: **{load.running:.0f}** requests running, "
                f"**{load.waiting:.0f}** waiting, KV cache **{load.kv_cache_usage:.1%}** full; since it started: "
                f"**{load.generation_tokens:,.0f}** tokens generated, {load.prompt_tokens:,.0f} prompt tokens read, "
                f"prefix cache hit **{load.prefix_cache_hit_rate:.1%}** of {load.prefix_cache_queries:,.0f} "
                "looked-up tokens (their KV reused, not recomputed).")
        return text, load.to_dict()

    def prompt_ids(self, loaded: LoadedModel, prompt: str) -> torch.Tensor:
        if not str(prompt).strip():
            raise srv.ServingInputError("Type a prompt: every row of the batch starts from it.")
        ids = encode_prompt(loaded.tokenizer, str(prompt), chat=False)  # [1, n]: plain text, short prefills
        cap = self.ctx.limits.serving_prompt_tokens
        if ids.shape[1] > cap:
            raise srv.ServingInputError(f"The prompt has {ids.shape[1]} tokens; this tab takes at most {cap}.")
        return ids

    def curve(self, prompt: str, batch_sizes: list[int], decode_steps: float, request: gr.Request | None,
              progress: gr.Progress) -> tuple[srv.BatchingCurve, LoadedModel]:
        steps = whole_number_in("Decode steps", decode_steps, 1, self.ctx.limits.serving_decode_steps)
        sizes = srv.check_batch_sizes(batch_sizes or [], self.ctx.limits.serving_batch)
        loaded = self.ctx.model()
        ids = self.prompt_ids(loaded, prompt)
        progress((0, len(sizes) * steps), desc="Timing decode steps", unit="steps")
        with self.stops.running(request) as cancel:
            curve = srv.measure_batching(loaded.model, ids, sizes, steps, lock=loaded.lock, cancel=cancel,
                                         progress=lambda done, total: progress((done, total), unit="steps",
                                                                               desc="Timing decode steps"))
        return curve, loaded

    @user_errors
    def measure(self, prompt: str, batch_sizes: list[int], decode_steps: float, requests: str, slots: float,
                block_size: float, reserve: float, request: gr.Request = None,
                progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        """The main button: measure the curve, then the KV cache, schedule and block table it drives."""
        lengths, slot_count = self.schedule_inputs(requests, slots)  # refuse bad input before the timing
        self.paged_inputs(requests, block_size, reserve)
        try:
            curve, loaded = self.curve(prompt, batch_sizes, decode_steps, request, progress)
        except srv.MeasurementCancelled as cancelled:
            blank = empty_figure(f"⏹ {cancelled}")
            return (f"⏹ {cancelled}", blank, [], blank, blank, [], blank, "", {}, {}, {}, {})
        costs = srv.format_step_costs(curve.step_costs())
        kv = self.kv_report(loaded, [p.kv for p in curve.points])
        schedule_plot, schedule_table, schedule_json = self.schedule_view(lengths, slot_count,
                                                                          srv.parse_step_costs(costs))
        paged_plot, paged_json = self.paged(requests, block_size, reserve)
        status = batching_summary(curve, loaded) + self.engine_note()
        return (status, figures.batching_figure(curve), batching_rows(curve), figures.kv_memory_figure(kv),
                schedule_plot, schedule_table, paged_plot, costs, curve.as_json(), kv.as_json(), schedule_json,
                paged_json)

    def stop(self, request: gr.Request = None) -> str:
        return "⏹ Stopping after the current batch size…" if self.stops.stop(request) else "Nothing is running."

    # -- KV cache ----------------------------------------------------------------------------------

    def kv_report(self, loaded: LoadedModel, points: list[srv.KVPoint]) -> srv.KVMemoryReport:
        return srv.KVMemoryReport(AttentionShape.from_config(loaded.model.config), points[0].bytes_per_value,
                                  str(loaded.device), srv.free_memory_bytes(str(loaded.device)), tuple(points))

    @user_errors
    def kv_cache(self, prompt: str, batch: float, context: float) -> tuple[Any, dict[str, Any]]:
        """One prefill of batch x context tokens; the cache is measured, then cropped to 1/2 and 1/4 and measured
        again (cropping frees the positions: the tensors shrink)."""
        batch = whole_number_in("Batch", batch, 1, self.ctx.limits.serving_batch)
        context = whole_number_in("Context", context, 4, self.ctx.limits.serving_kv_tokens)
        if batch * context > self.ctx.limits.serving_kv_tokens:
            raise srv.ServingInputError(f"Batch x context = {batch * context:,} tokens; this server measures at "
                                        f"most {self.ctx.limits.serving_kv_tokens:,} in one prefill.")
        loaded = self.ctx.model()
        ids = self.prompt_ids(loaded, prompt)[0]
        tiled = ids.repeat(context // len(ids) + 1)[:context]  # the prompt repeated up to `context` tokens
        shape = AttentionShape.from_config(loaded.model.config)
        cache = DynamicCache()
        with loaded.lock, torch.inference_mode():
            loaded.model(input_ids=tiled.expand(batch, -1).to(model_device(loaded.model)),
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        points = []
        for tokens in sorted({context, context // 2, context // 4}, reverse=True):
            if tokens < cache.get_seq_length():
                cache.crop(tokens - cache.get_seq_length())  # a negative count: drop that many positions
            points.append(srv.kv_point(cache, shape, batch))
        report = self.kv_report(loaded, points[::-1])
        return figures.kv_memory_figure(report), report.as_json()

    # -- simulation and paging (pure: no model) -------------------------------------------------------

    def schedule_inputs(self, requests: str, slots: float) -> tuple[list[int], int]:
        lengths = srv.parse_lengths(requests, self.ctx.limits.serving_requests, self.ctx.limits.serving_request_tokens)
        return lengths, whole_number_in("Batch slots", slots, 1, self.ctx.limits.serving_batch)

    def schedule_view(self, lengths: list[int], slots: int, costs: srv.StepCostModel) -> tuple[Any, list, dict]:
        static = srv.simulate(lengths, slots, "static", costs)
        continuous = srv.simulate(lengths, slots, "continuous", costs)
        data = {"simulation": True, "step_costs_seconds": costs.as_json(), "static": static.as_json(),
                "continuous": continuous.as_json()}
        return figures.schedule_figure(static, continuous), schedule_rows(static, continuous), data

    @user_errors
    def schedule(self, requests: str, slots: float, step_costs: str) -> tuple[Any, list, dict]:
        lengths, slots = self.schedule_inputs(requests, slots)
        return self.schedule_view(lengths, slots, srv.parse_step_costs(step_costs))

    def paged_inputs(self, requests: str, block_size: float, reserve: float) -> tuple[list[int], int, int]:
        lengths = srv.parse_lengths(requests, self.ctx.limits.serving_requests, self.ctx.limits.serving_request_tokens)
        block = whole_number_in("Block size", block_size, 1, 256)
        reserve = whole_number_in("Reserved tokens per request", reserve, 1, self.ctx.limits.serving_request_tokens)
        return lengths, block, reserve

    @user_errors
    def paged(self, requests: str, block_size: float, reserve: float) -> tuple[Any, dict[str, Any]]:
        lengths, block, reserve = self.paged_inputs(requests, block_size, reserve)
        table = srv.block_table(lengths, block, reserve)
        loaded = self.ctx.model()  # only its shape and dtype: what one cached token costs (no forward)
        per_token = srv.formula_cache_bytes(AttentionShape.from_config(loaded.model.config), 1, 1,
                                            loaded.model.dtype.itemsize)
        return figures.paged_figure(table, per_token), table.as_json(per_token)


def create_serving_tab(ctx: AppContext) -> dict[str, Any]:
    handlers = ServingHandlers(ctx)
    limits = ctx.limits
    explanation(EXPLANATION)
    batch_choices = [b for b in BATCH_CHOICES if b <= limits.serving_batch]
    with gr.Row():
        prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt (every row of the batch starts from it)", scale=3)
        batch_sizes = gr.CheckboxGroup(batch_choices, value=batch_choices, label="Batch sizes to measure", scale=3)
        decode_steps = gr.Slider(2, limits.serving_decode_steps, value=4, step=1, label="Timed decode steps",
                                 scale=2)
    with gr.Row():
        requests = gr.Textbox(DEFAULT_REQUESTS, label="Simulated requests (tokens each)", scale=3)
        slots = gr.Slider(1, limits.serving_batch, value=4, step=1, label="Batch slots", scale=2)
        block_size = gr.Slider(1, 64, value=16, step=1, label="KV block size (tokens)", scale=2)
        reserve = gr.Slider(1, limits.serving_request_tokens, value=128, step=1, label="Reserved tokens per request (no paging)", scale=2)
    with gr.Row():
        run = gr.Button("Measure & simulate", variant="primary", scale=3)
        stop_button = gr.Button("Stop", variant="stop", scale=1)
    status = gr.Markdown(EMPTY_MESSAGE, elem_id="serving-status")
    batching_plot = gr.Plot(label="Batching curve (measured)", elem_id="serving-batching")
    batching_table = gr.Dataframe(headers=BATCHING_HEADERS, label="Batching, measured", interactive=False)

    gr.Markdown("### KV cache: measured bytes vs the formula vs free memory")
    kv_plot = gr.Plot(label="KV cache memory", elem_id="serving-kv")
    with gr.Row():
        kv_batch = gr.Slider(1, limits.serving_batch, value=8, step=1, label="Batch")
        kv_context = gr.Slider(4, limits.serving_kv_tokens, value=256, step=4, label="Context tokens")
        kv_button = gr.Button("Measure this cache", scale=0, min_width=180)

    gr.Markdown("### Static vs continuous batching (simulation on the measured step costs)")
    with gr.Row():
        step_costs = gr.Textbox("", label="Step costs, batch:ms (filled by the measurement; editable)", scale=4)
        simulate = gr.Button("Simulate", scale=0, min_width=140)
    schedule_plot = gr.Plot(label="Timeline (simulation)", elem_id="serving-schedule")
    schedule_table = gr.Dataframe(headers=SCHEDULE_HEADERS, label="Throughput and waiting (simulation)",
                                  interactive=False)

    gr.Markdown("### Paged KV cache")
    paged_button = gr.Button("Show block table", scale=0, min_width=180)
    paged_plot = gr.Plot(label="Block table", elem_id="serving-paged")

    with gr.Accordion("The engine, live", open=True, visible=ctx.engine is not None):
        engine_text = gr.Markdown("Reading the engine's /metrics…", elem_id="serving-engine")
        engine_refresh = gr.Button("Read the engine's metrics now", size="sm")
        engine_json = gr.JSON(label="serving_engine_metrics")
        engine_timer = gr.Timer(ENGINE_METRICS_SECONDS, active=ctx.engine is not None)

    with gr.Accordion("Raw numbers (JSON)", open=False):
        batching_json = gr.JSON(label="serving_batching")
        kv_json = gr.JSON(label="serving_kv_cache")
        schedule_json = gr.JSON(label="serving_schedule")
        paged_json = gr.JSON(label="serving_paged")

    run.click(handlers.measure, [prompt, batch_sizes, decode_steps, requests, slots, block_size, reserve],
              [status, batching_plot, batching_table, kv_plot, schedule_plot, schedule_table, paged_plot, step_costs,
               batching_json, kv_json, schedule_json, paged_json], api_name="serving_batching")
    stop_button.click(handlers.stop, None, status, api_name="stop_serving", queue=False)
    kv_button.click(handlers.kv_cache, [prompt, kv_batch, kv_context], [kv_plot, kv_json], api_name="serving_kv_cache")
    simulate.click(handlers.schedule, [requests, slots, step_costs], [schedule_plot, schedule_table, schedule_json],
                   api_name="serving_schedule")
    paged_button.click(handlers.paged, [requests, block_size, reserve], [paged_plot, paged_json],
                       api_name="serving_paged")
    # no model touched: off the queue, so a busy model never delays the engine's numbers
    engine_refresh.click(handlers.engine_metrics, None, [engine_text, engine_json],
                         api_name="serving_engine_metrics", queue=False)
    engine_timer.tick(handlers.engine_metrics, None, [engine_text, engine_json], api_visibility="private",
                      show_progress="hidden", queue=False)
    return {"prompt": prompt, "batch_sizes": batch_sizes, "decode_steps": decode_steps, "requests": requests,
            "slots": slots, "block_size": block_size, "reserve": reserve, "run": run, "stop": stop_button,
            "status": status, "batching_plot": batching_plot, "batching_table": batching_table, "kv_plot": kv_plot,
            "kv_batch": kv_batch, "kv_context": kv_context, "kv_button": kv_button, "step_costs": step_costs,
            "simulate": simulate, "schedule_plot": schedule_plot, "schedule_table": schedule_table,
            "paged_button": paged_button, "paged_plot": paged_plot, "batching_json": batching_json,
            "kv_json": kv_json, "schedule_json": schedule_json, "paged_json": paged_json}
