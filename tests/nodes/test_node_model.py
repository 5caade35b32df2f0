import os

import pytest
import torch
from safetensors.torch import save_file

from rest_core.whisper import WhisperEncoder
from nodes.model import DEFAULT_WHISPER, RESTModelLoader


def test_the_loader_lists_safetensors_checkpoints_of_models_rest_only(comfy, tiny_checkpoint):
    (tiny_checkpoint.parent / "notes.txt").write_text("not a model")
    (tiny_checkpoint.parent / "old.ckpt").write_bytes(b"pickle")
    names = RESTModelLoader.INPUT_TYPES()["required"]["checkpoint"][0]
    assert "tiny.safetensors" in names and all(name.endswith(".safetensors") for name in names)


def test_the_shipped_models_folder_is_searched_after_models_rest(comfy):
    import folder_paths
    from nodes.model import PLUGIN_MODELS

    paths = folder_paths.folder_names_and_paths["rest"][0]
    assert paths[0].endswith("rest") and paths[-1] == PLUGIN_MODELS


def test_loading_gives_a_model_under_comfys_memory_management(comfy, rest_model):
    assert rest_model.name == "tiny.safetensors" and rest_model.pipe.config.resolution == 64
    assert set(rest_model.patcher.model) == {"dit", "vae", "speech_ae", "whisper"}
    assert rest_model.patcher.model["dit"] is rest_model.pipe.dit
    rest_model.load()
    (models, options), = comfy.loaded
    assert models == [rest_model.patcher] and options == {"force_full_load": True}


def test_dtype_option_casts_the_model_but_not_the_speech_encoder(comfy):
    model, = RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "cpu", "bfloat16")
    assert next(model.pipe.dit.parameters()).dtype == torch.bfloat16
    assert next(model.pipe.whisper.parameters()).dtype == torch.float32


def test_a_dtype_this_cpu_only_emulates_is_loaded_with_a_warning(comfy, monkeypatch, caplog):
    import rest_core.precision

    monkeypatch.setattr(rest_core.precision, "onednn_runs", lambda dtype: dtype == torch.float32)
    model, = RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "cpu", "float16")
    assert next(model.pipe.dit.parameters()).dtype == torch.float16
    assert "float16 on this CPU is emulated" in caplog.text and "choose dtype auto or float32" in caplog.text
    caplog.clear()
    RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "cpu", "float32")
    assert "emulated" not in caplog.text


def test_a_speech_encoder_from_models_audio_encoders_replaces_the_bundled_one(comfy):
    torch.manual_seed(9)
    whisper = WhisperEncoder(layers=1)
    folder = comfy.models_dir + "/audio_encoders"
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.contiguous() for k, v in whisper.state_dict().items()}, folder + "/tiny-test.safetensors")
    assert "tiny-test.safetensors" in RESTModelLoader.INPUT_TYPES()["required"]["speech_encoder"][0]
    model, = RESTModelLoader().load("tiny.safetensors", "tiny-test.safetensors", "auto", "auto")
    assert torch.equal(model.pipe.whisper.conv1.weight, whisper.conv1.weight)


@pytest.mark.parametrize("checkpoint, encoder, message", [
    ("missing.safetensors", DEFAULT_WHISPER, "not in models/rest"),
    ("tiny.safetensors", "gone.safetensors", "not in models/audio_encoders"),
])
def test_missing_files_are_named_in_the_error(comfy, checkpoint, encoder, message):
    with pytest.raises(ValueError, match=message):
        RESTModelLoader().load(checkpoint, encoder, "auto", "auto")


def test_compile_is_an_optional_choice_that_compiles_the_dit_and_makes_another_model(comfy, monkeypatch):
    import rest_core.pipeline

    assert "compile" not in RESTModelLoader.INPUT_TYPES()["required"]  # prompts saved before it still run
    assert RESTModelLoader.INPUT_TYPES()["optional"]["compile"][1]["default"] is False
    checked = []
    monkeypatch.setattr(rest_core.pipeline, "check_compile_works", checked.append)
    plain, = RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "cpu", "float32")
    compiled, = RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "cpu", "float32", compile=True)
    assert checked == [torch.device("cpu")]
    assert all(block._compiled_call_impl is not None for block in compiled.pipe.dit.transformer_blocks)
    assert all(block._compiled_call_impl is None for block in plain.pipe.dit.transformer_blocks)
    assert compiled.identity != plain.identity


def test_a_weights_file_is_known_by_a_fingerprint_that_a_replacement_changes(comfy, tmp_path):
    from nodes.model import FINGERPRINT_BYTES, file_fingerprint

    path = tmp_path / "model.safetensors"
    data = bytearray(os.urandom(3 * FINGERPRINT_BYTES))
    path.write_bytes(data)
    first = file_fingerprint(str(path))
    assert file_fingerprint(str(path)) == first
    stamp = os.stat(path).st_mtime_ns
    for where in (10, len(data) - 10):  # the header's end of the file and the weights' end, same size and time
        changed = bytearray(data)
        changed[where] ^= 1
        path.write_bytes(changed)
        os.utime(path, ns=(stamp, stamp))
        assert file_fingerprint(str(path)) != first
    path.write_bytes(data)  # the same bytes written again: a new modification time
    os.utime(path, ns=(stamp + 1_000_000_000, stamp + 1_000_000_000))
    assert file_fingerprint(str(path)) != first
    os.utime(path, ns=(stamp, stamp))
    assert file_fingerprint(str(path)) == first


def test_an_ltx_vae_in_models_vae_is_offered_and_refused_for_a_reference_conditioned_checkpoint(comfy, tmp_path):
    import folder_paths

    from nodes.model import FROM_CHECKPOINT

    folder = os.path.join(folder_paths.models_dir, "vae")
    os.makedirs(folder, exist_ok=True)
    save_file({"encoder.down_blocks.0.res_blocks.0.conv1.conv.weight": torch.zeros(1)},
              os.path.join(folder, "ltx-video-vae.safetensors"))
    choices = RESTModelLoader.INPUT_TYPES()["optional"]["vae"][0]
    assert choices[0] == FROM_CHECKPOINT and "ltx-video-vae.safetensors" in choices
    with pytest.raises(ValueError, match="is not an LTX-Video VAE"):  # checked before anything else is built on it
        RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "auto", "auto", vae="ltx-video-vae.safetensors")
    with pytest.raises(ValueError, match="not in models/vae"):
        RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "auto", "auto", vae="gone.safetensors")
