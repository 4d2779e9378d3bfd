"""Prepared examples per tab, with their outputs cached, so a demo shows them instantly, offline and cold.

Each tab's examples live in `assets/examples/<tab>.json`: a name, a title, the input values (the same
names a deep link uses) and the outputs its main button produced on the embedded model, stored exactly
as gradio sends them to the page. Clicking an example (or opening `?tab=<tab>&example=<name>`) fills the
inputs and shows those outputs without running the model; the tab's own button recomputes them live.

Regenerate after changing a tab or an example (a few minutes on 2 CPU cores):

    python -m playground.ui.refresh_examples            # every tab      (make examples)
    python -m playground.ui.refresh_examples sampling   # one tab

An example without cached outputs (a tab with no main button) only fills the inputs. LoRA's main button is
Train: its examples cache a whole training run (the stream's last update), so they regenerate in minutes.

A tab opens showing the cached result of its first example whose inputs equal the tab's starting values
(`opening_example`), labelled with the date and machine it was computed on, so no tab opens empty.
"""

from __future__ import annotations

import inspect
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import gradio as gr
from pydantic import BaseModel

from playground.config import ASSETS

EXAMPLES_DIR = ASSETS / "examples"


@dataclass(frozen=True)
class Example:
    name: str  # used in ?example=<name> and in element ids
    title: str  # the gallery button's text
    values: dict[str, Any]  # deep-linkable input name -> value
    outputs: list[Any] | None = None  # payloads for the main button's outputs, as gradio sends them


@dataclass(frozen=True)
class ExampleFile:
    tab: str
    examples: tuple[Example, ...]
    model: str = ""  # the model the outputs were computed on
    generated: str = ""  # when (UTC)
    machine: str = ""  # where: "2-core Intel Xeon, AVX-512" (timings in the outputs depend on it)
    extra: dict[str, Any] = field(default_factory=dict)


def example_path(tab: str) -> Path:
    return EXAMPLES_DIR / f"{tab}.json"


def load_example_file(tab: str) -> ExampleFile:
    path = example_path(tab)
    if not path.exists():
        return ExampleFile(tab, ())
    raw = json.loads(path.read_text(encoding="utf-8"))
    examples = tuple(Example(item["name"], item["title"], item.get("values", {}), item.get("outputs"))
                     for item in raw.get("examples", []))
    return ExampleFile(tab, examples, raw.get("model", ""), raw.get("generated", ""), raw.get("machine", ""))


def describe_machine() -> str:
    """This machine in a few words, for the "computed on" line: cores, CPU model, widest vector unit."""
    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        info = ""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            cpu = " ".join(value.replace("(R)", "").split())
        elif key.strip() == "flags":
            flags = value
    vector = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags.split()), "")
    return f"{os.cpu_count()}-core {cpu}" + (f", {vector}" if vector else "")


def opening_example(data: ExampleFile, starting_values: Mapping[str, Any], outputs_count: int) -> Example | None:
    """The example a tab opens with: the first whose inputs all equal the tab's starting values (so the
    controls and the cached view agree) and whose cached outputs fit the main button (`outputs_count`)."""
    for example in data.examples:
        fits = example.outputs is not None and len(example.outputs) == outputs_count
        if fits and all(starting_values.get(name) == value for name, value in example.values.items()):
            return example
    return None


def example_values(tab: str, name: str) -> dict[str, Any]:
    """One prepared example's input values (e.g. for a test or a benchmark that shows the same thing)."""
    for example in load_example_file(tab).examples:
        if example.name == name:
            return dict(example.values)
    raise KeyError(f"no example {name!r} in {example_path(tab)}")


def save_example_file(data: ExampleFile) -> Path:
    path = example_path(data.tab)
    payload = {"tab": data.tab, "model": data.model, "generated": data.generated, "machine": data.machine,
               "regenerate": f"python -m playground.ui.refresh_examples {data.tab}",
               "examples": [{"name": ex.name, "title": ex.title, "values": ex.values, "outputs": ex.outputs}
                            for ex in data.examples]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Computing outputs through the tab's own handler
# ---------------------------------------------------------------------------------------------


def click_handler(demo: gr.Blocks, button: Any) -> Any:
    """The BlockFunction that `button.click` runs (the tab's main action)."""
    for block_fn in demo.fns.values():
        if any(target == button._id and event == "click" for target, event in block_fn.targets):
            return block_fn
    raise LookupError(f"no click handler for button {button.elem_id or button._id}")


def _as_payload(value: Any) -> Any:
    # Any pydantic model (gr.JSON's JsonData is a plain RootModel, not a GradioRootModel) -> plain data.
    return value.model_dump() if isinstance(value, BaseModel) else value


def handler_input(component: Any, value: Any) -> Any:
    """A component value as the handler receives it (postprocess to the page's payload, then preprocess)."""
    payload = component.postprocess(value) if value is not None else None
    return component.preprocess(payload) if payload is not None else None


def output_payload(component: Any, value: Any) -> Any:
    """A handler's return value as the page receives it; a component update becomes an update dict."""
    if isinstance(value, gr.blocks.Block):
        update = {key: val for key, val in value.constructor_args.items() if key != "render"}
        if "value" in update:
            update["value"] = _as_payload(component.postprocess(update["value"]))
        return {**update, "__type__": "update"}
    return _as_payload(component.postprocess(value))


def run_handler(block_fn: Any, components_by_id: Mapping[int, Any], values: Mapping[int, Any]) -> list[Any]:
    """Call the handler with each input's value (an example's value, else the component's own) and
    return its outputs as page payloads. A streaming handler's last update is the result."""
    arguments = [handler_input(component, values.get(component._id, component.value))
                 for component in block_fn.inputs]
    result = block_fn.fn(*arguments)
    if inspect.isgenerator(result):
        last = None
        for last in result:
            pass
        result = last
    if len(block_fn.outputs) == 1:
        result = [result]
    return [output_payload(components_by_id[component._id], value)
            for component, value in zip(block_fn.outputs, result, strict=True)]


def json_safe(value: Any) -> Any:
    """Round-trip through JSON (tuples -> lists, NaN kept as NaN) so a fresh result compares to a stored one.
    Anything JSON cannot hold is an error here, not a string in the cache."""
    return json.loads(json.dumps(value))


def compute_example(demo: gr.Blocks, links: Any, example: Example) -> list[Any]:
    """One example's outputs through the tab's main handler (the same code a click runs)."""
    block_fn = click_handler(demo, links.run_button)
    by_name = dict(zip((spec.name for spec in links.fields), links.components))
    values = {by_name[name]._id: value for name, value in example.values.items()}
    return json_safe(run_handler(block_fn, demo.blocks, values))
