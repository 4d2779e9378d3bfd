"""LoRA fine-tuning: datasets, the training loop, the background job and its JSONL progress log.

LoRA freezes every weight W (d x k) of the model and learns a low-rank update beside the chosen ones:

    W' = W + (alpha / r) * B @ A,    B: [d, r] starts at zero,  A: [r, k] random

so the adapted model starts out *identical* to the base model (B = 0) and trains r * (d + k) numbers
per matrix instead of d * k. The loss is the mean next-token cross-entropy over the response tokens
only (the prompt is masked with label -100), which teaches the model how to answer, not how to ask.

Everything here takes plain Python / torch values and returns frozen dataclasses or dicts; the UI
(playground/ui/lora_tab.py) polls the JSONL log that a `TrainingJob` writes, like LLaMA-Factory's
`Runner.monitor`, so a reloaded page can re-attach to a running job.

Modules, in the order a run goes through them:

- errors.py    LoraError and its kinds (dataset, settings, busy job, no adapter): messages the UI shows as is
- settings.py  LoraSettings (one run's hyperparameters), their LIMITS, the learning-rate schedule
- data.py      datasets (shipped, JSONL uploads), tokenization with the prompt masked, padded batches
- training.py  the masked loss, LoRA's parameter budget and attach_lora (PEFT), PeakMemory, train_lora
- job.py       LoraRunner / TrainingJob: one background job writing a JSONL log; read_events, summarize_events
- compare.py   before / after: both models' answers, how the next token's distribution moved
- adapters.py  the trained adapter as a PEFT zip, or merged into a copy of the base (merge_adapter)

The names the rest of the app uses are re-exported here: `from playground import lora`, then `lora.LoraSettings`.
"""

from playground.lora.errors import (
    DatasetError,
    JobBusyError,
    LoraError,
    LoraSettingsError,
    NoAdapterError,
)
from playground.lora.settings import (
    INTEGER_FIELDS,
    LIMITS,
    LoraSettings,
    SCHEDULES,
    check_limit,
    learning_rate_at,
)
from playground.lora.data import (
    ASSETS,
    BUILTIN_DATASETS,
    Batch,
    ChatExample,
    Dataset,
    EVAL_FRACTION,
    IGNORE_INDEX,
    MAX_UPLOAD_LINES,
    ROLES,
    RejectedLine,
    TokenizedExample,
    TokenizedSplit,
    batch_order,
    builtin_dataset,
    collate,
    conversation_ids,
    dataset_from_jsonl,
    example_from_record,
    fixed_batches,
    parse_jsonl,
    shuffled_batches,
    token_report,
    tokenize_example,
    tokenize_split,
)
from playground.lora.training import (
    EventFn,
    LoraBudget,
    MAX_EVAL_EXAMPLES,
    MatrixBudget,
    PeakMemory,
    TrainingRun,
    attach_lora,
    evaluate_loss,
    is_4bit,
    linear_layer_names,
    lora_budget,
    loss_sum,
    model_device,
    train_lora,
)
from playground.lora.job import (
    LoraRunner,
    SMOOTHING,
    TrainedAdapter,
    TrainingJob,
    TrainingProgress,
    read_events,
    smoothed,
    summarize_events,
)
from playground.lora.compare import (
    AnswerPair,
    NextTokenShift,
    TokenShift,
    base_behaviour,
    compare_answers,
    next_token_logits,
    next_token_shift,
)
from playground.lora.adapters import (
    merge_adapter,
    merged_key,
    save_adapter_zip,
)

__all__ = [
    "ASSETS",
    "AnswerPair",
    "BUILTIN_DATASETS",
    "Batch",
    "ChatExample",
    "Dataset",
    "DatasetError",
    "EVAL_FRACTION",
    "EventFn",
    "IGNORE_INDEX",
    "INTEGER_FIELDS",
    "LIMITS",
    "JobBusyError",
    "LoraBudget",
    "LoraError",
    "LoraRunner",
    "LoraSettings",
    "LoraSettingsError",
    "MAX_EVAL_EXAMPLES",
    "MAX_UPLOAD_LINES",
    "MatrixBudget",
    "NextTokenShift",
    "NoAdapterError",
    "PeakMemory",
    "ROLES",
    "RejectedLine",
    "SCHEDULES",
    "SMOOTHING",
    "TokenShift",
    "TokenizedExample",
    "TokenizedSplit",
    "TrainedAdapter",
    "TrainingJob",
    "TrainingProgress",
    "TrainingRun",
    "attach_lora",
    "base_behaviour",
    "batch_order",
    "builtin_dataset",
    "check_limit",
    "collate",
    "compare_answers",
    "conversation_ids",
    "dataset_from_jsonl",
    "evaluate_loss",
    "example_from_record",
    "fixed_batches",
    "is_4bit",
    "learning_rate_at",
    "linear_layer_names",
    "lora_budget",
    "loss_sum",
    "merge_adapter",
    "merged_key",
    "model_device",
    "next_token_logits",
    "next_token_shift",
    "parse_jsonl",
    "read_events",
    "save_adapter_zip",
    "shuffled_batches",
    "smoothed",
    "summarize_events",
    "token_report",
    "tokenize_example",
    "tokenize_split",
    "train_lora",
]
