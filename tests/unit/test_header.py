"""The header's picker after a load: it shows the model actually in use (a failed load left the failed name there)."""

from __future__ import annotations

import gradio as gr
import pytest

from playground.config import Settings
from playground.runtime import ModelLoadError, ModelManager
from playground.ui.context import AppContext
from playground.ui.header import create_header, picker_in_use


@pytest.fixture(scope="module")
def ctx(tiny_model_dir, tmp_path_factory):
    manager = ModelManager(Settings(model=str(tiny_model_dir), precision="none", device="cpu", offline=True,
                                    cache_dir=tmp_path_factory.mktemp("cache")))
    manager.load()
    return AppContext(manager.settings, manager)


def test_after_a_failed_load_the_picker_shows_the_model_in_use(ctx):
    with pytest.raises(ModelLoadError):
        ctx.models.load("definitely not a model", "auto", "cpu")
    model, precision, device = picker_in_use(ctx)
    in_use = ctx.models.require_active()
    assert model["value"] == in_use.spec.key and precision["value"] == "none" and device["value"] == "cpu"


def test_the_picker_is_reset_when_load_model_fails(ctx):
    with gr.Blocks() as demo:
        header = create_header(ctx)
    config = demo.get_config_file()
    load = next(d for d in config["dependencies"] if d["api_name"] == "load_model")
    resets = [d for d in config["dependencies"] if d["trigger_after"] == load["id"] and d.get("trigger_only_on_failure")]
    picker = [header[name]._id for name in ("model", "precision", "device")]
    assert [d["outputs"] for d in resets] == [picker]


def test_without_a_model_the_picker_is_left_alone(stub_context):
    assert picker_in_use(stub_context(None)) == (gr.skip(), gr.skip(), gr.skip())
