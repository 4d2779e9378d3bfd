"""The Model & quantization tab's handlers (closures, called through the built tab): empty and non-finite inputs
get a message naming the input (issue 24 #9)."""

from __future__ import annotations

import math

import gradio as gr
import pytest

from playground.ui.quantization_tab import create_quantization_tab


@pytest.fixture(scope="module")
def api(tiny_context):
    with gr.Blocks() as demo:
        create_quantization_tab(tiny_context)
    return {fn.api_name: fn.fn for fn in demo.fns.values() if fn.api_name}


@pytest.mark.parametrize("layer, message", [(None, r"layer index must be a whole number in 0\.\.1, got None"),
                                            (0.5, r"layer index must be a whole number"),
                                            (math.nan, r"Input 1 \(layer_index\) must be a finite number")])
def test_weight_view_names_a_missing_or_broken_layer(api, layer, message):
    with pytest.raises(gr.Error, match=message):
        api["weight_quantization"](layer, "mlp.down_proj")


@pytest.mark.parametrize("args, message", [
    ((8192, 1, math.nan), r"Input 3 \(gpu_gb\) must be a finite number"),
    ((8192, 1, math.inf), r"Input 3 \(gpu_gb\) must be a finite number"),
    ((None, 1, 24), r"context length must be a whole number"),
    ((8192, None, 24), r"batch must be a whole number"),
    ((10**30, 1, 24), r"context length must be a whole number in 1\.\."),
])
def test_memory_estimate_refuses_non_finite_and_missing_sizes(api, args, message):
    with pytest.raises(gr.Error, match=message):
        api["memory_estimate"](*args)
