from pathlib import Path

import pytest

from playground.config import DEFAULT_MODEL, Settings, load_settings


def test_defaults_without_flags_or_env():
    settings = load_settings([], environ={})
    assert settings.model == DEFAULT_MODEL
    assert (settings.precision, settings.device, settings.port, settings.offline) == ("auto", "auto", 7860, False)
    assert settings.cache_dir.name == "visual-llm-playground"


def test_env_vars_fill_every_field():
    env = {"PLAYGROUND_MODEL": "Qwen/Qwen2.5-0.5B-Instruct", "PLAYGROUND_PRECISION": "nf4",
           "PLAYGROUND_DEVICE": "cpu", "PLAYGROUND_PORT": "9000", "PLAYGROUND_OFFLINE": "yes",
           "PLAYGROUND_SHARE": "0", "PLAYGROUND_CACHE_DIR": "/tmp/x", "PLAYGROUND_PRELOAD": "false"}
    settings = load_settings([], environ=env)
    assert settings == Settings(model="Qwen/Qwen2.5-0.5B-Instruct", precision="nf4", device="cpu", port=9000,
                                offline=True, share=False, cache_dir=Path("/tmp/x"), preload=False)


def test_cli_flags_override_env():
    settings = load_settings(["--port", "8001", "--no-offline", "--precision", "none"],
                             environ={"PLAYGROUND_PORT": "9000", "PLAYGROUND_OFFLINE": "1", "PLAYGROUND_PRECISION": "nf4"})
    assert (settings.port, settings.offline, settings.precision) == (8001, False, "none")


def test_spaces_gradio_env_vars_are_honoured():
    settings = load_settings([], environ={"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"})
    assert (settings.host, settings.port) == ("0.0.0.0", 7861)


@pytest.mark.parametrize("env, message", [
    ({"PLAYGROUND_PRECISION": "int3"}, "precision must be one of"),
    ({"PLAYGROUND_QUANTIZATION": "int3"}, "precision must be one of"),
    ({"PLAYGROUND_DEVICE": "tpu"}, "device must be one of"),
    ({"PLAYGROUND_OFFLINE": "maybe"}, "not a boolean"),
    ({"PLAYGROUND_PORT": "70000"}, "port must be in"),
])
def test_bad_env_values_are_named(env, message):
    with pytest.raises(ValueError, match=message):
        load_settings([], environ=env)


def test_invalid_cli_choice_exits():
    with pytest.raises(SystemExit):
        load_settings(["--device", "tpu"], environ={})


def test_the_old_quantization_flag_and_env_var_still_work_with_a_notice(capsys):
    assert load_settings(["--quantization", "int8"], environ={}).precision == "int8"
    assert "--quantization is deprecated: use --precision" in capsys.readouterr().err
    assert load_settings([], environ={"PLAYGROUND_QUANTIZATION": "none"}).precision == "none"
    assert "PLAYGROUND_QUANTIZATION is deprecated" in capsys.readouterr().err
    # the new names win over the old ones; a flag still beats an env var
    assert load_settings(["--precision", "int4", "--quantization", "int8"], environ={}).precision == "int4"
    assert load_settings([], environ={"PLAYGROUND_PRECISION": "nf4", "PLAYGROUND_QUANTIZATION": "none"}).precision == "nf4"
    assert load_settings(["--quantization", "int8"], environ={"PLAYGROUND_PRECISION": "nf4"}).precision == "int8"
