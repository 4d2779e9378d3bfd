"""Sampling: the one pipeline, and what the Sampling tab shows about it.

Table of contents (imports point down the list; nothing here imports a module above it):

- playground/sampling_pipeline.py  SamplingSettings and the stages penalty -> temperature -> top-k ->
                                    top-p -> min-p, final_probabilities, sample_next_token. Below the
                                    generation loop (generation imports it), so it lives outside this
                                    package: importing a submodule would run this __init__ first.
- views.py    one next-token distribution stage by stage (`next_token_view`), a temperature sweep,
              many draws checked with a chi-square test (`sample_histogram`)
- cache.py    the prompt's next-token logits, cached per prompt (`PromptLogitsCache`)
- traces.py   step-through generation with alternatives (`trace_generation`) and branching (`branch_trace`)

Every public name is re-exported here, so `from playground import sampling` and
`from playground.sampling import SamplingSettings` keep working.

    >>> from playground.sampling import SamplingSettings, apply_top_k
    >>> SamplingSettings(temperature=0).is_greedy
    True
"""

from playground.sampling.cache import (
    MAX_PROMPT_TOKENS,
    PromptLogits,
    PromptLogitsCache,
    compute_prompt_logits,
    encode_capped_prompt,
)
from playground.sampling.traces import (
    MAX_TRACE_TOKENS,
    Alternative,
    GenerationTrace,
    TraceFieldError,
    TraceStep,
    analyse_step,
    branch_prefix,
    branch_trace,
    stream_trace,
    trace_from_client,
    trace_generation,
)
from playground.sampling.views import (
    DEFAULT_TOP_N,
    MAX_SAMPLES,
    STAGE_LABELS,
    SWEEP_TEMPERATURES,
    ChiSquare,
    ChosenToken,
    NextTokenView,
    SampleHistogram,
    SweepPanel,
    TemperatureSweep,
    TokenStages,
    chi_square_test,
    draw_samples,
    entropy_bits,
    next_token_view,
    raw_ranks,
    sample_histogram,
    settings_notes,
    stage_is_active,
    stage_probabilities,
    temperature_sweep,
    token_text,
)
from playground.sampling_pipeline import (
    NEG_INF,
    STAGE_NAMES,
    SamplingSettings,
    SamplingSettingsError,
    apply_min_p,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    final_probabilities,
    pipeline_stages,
    sample_from,
    sample_next_token,
)

__all__ = [
    "MAX_PROMPT_TOKENS", "PromptLogits", "PromptLogitsCache", "compute_prompt_logits", "encode_capped_prompt",
    "MAX_TRACE_TOKENS", "Alternative", "GenerationTrace", "TraceFieldError", "TraceStep", "analyse_step", "branch_prefix", "branch_trace",
    "stream_trace", "trace_from_client", "trace_generation",
    "DEFAULT_TOP_N", "MAX_SAMPLES", "STAGE_LABELS", "SWEEP_TEMPERATURES", "ChiSquare", "ChosenToken",
    "NextTokenView", "SampleHistogram", "SweepPanel", "TemperatureSweep", "TokenStages", "chi_square_test",
    "draw_samples", "entropy_bits", "next_token_view", "raw_ranks", "sample_histogram", "settings_notes",
    "stage_is_active", "stage_probabilities", "temperature_sweep", "token_text",
    "NEG_INF", "STAGE_NAMES", "SamplingSettings", "SamplingSettingsError", "apply_min_p",
    "apply_repetition_penalty", "apply_temperature", "apply_top_k", "apply_top_p", "final_probabilities",
    "pipeline_stages", "sample_from", "sample_next_token",
]
