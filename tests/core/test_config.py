import pytest
import torch

from rest_core import A2VDiT, DiTConfig, RESTConfig, SpeechConfig
from rest_core.dit import FeedForward


def test_presets_have_the_design_shapes():
    big = RESTConfig.preset("rest-2b")
    assert (big.dit.depth, big.dit.hidden, big.dit.heads, big.dit.in_channels) == (28, 2048, 32, 128)
    assert (big.resolution, big.dit.text_dim, big.latent_size) == (512, 4096, 16)
    demo = RESTConfig.preset("rest-demo")
    assert demo.latent_size * 32 == demo.resolution
    assert demo.frames_per_chunk == 24


def test_config_round_trips_through_json():
    for name in ("rest-2b", "rest-demo"):
        config = RESTConfig.preset(name)
        assert RESTConfig.from_json(config.to_json()) == config


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="rest-demo"):
        RESTConfig.preset("rest-7b")


@pytest.mark.parametrize("kwargs, word", [
    (dict(resolution=500), "multiple of 32"),
    (dict(chunk_latents=0), "chunk_latents"),
    (dict(fps=30), "25 fps"),
])
def test_bad_config_values_are_rejected(kwargs, word):
    with pytest.raises(ValueError, match=word):
        RESTConfig(**kwargs)


def test_heads_must_divide_hidden():
    with pytest.raises(ValueError, match="divisible"):
        DiTConfig(hidden=100, heads=3)


def test_the_feed_forward_gelu_is_the_configured_one():
    with pytest.raises(ValueError, match="ffn_gelu='erf': choose 'tanh' or 'none'"):
        DiTConfig(ffn_gelu="erf")
    assert RESTConfig.preset("rest-2b").dit.ffn_gelu == "tanh"  # LTX-Video's
    assert RESTConfig.from_dict({"dit": {"hidden": 64, "heads": 2}}).dit.ffn_gelu == "tanh"  # older checkpoints
    x = torch.randn(3, 64)
    for gelu in ("tanh", "none"):
        ff = FeedForward(64, 2, gelu)
        assert torch.allclose(ff(x), ff.fc2(torch.nn.functional.gelu(ff.fc1(x), approximate=gelu)))
    ff_tanh, ff_none = FeedForward(64, 2, "tanh"), FeedForward(64, 2, "none")
    ff_none.load_state_dict(ff_tanh.state_dict())
    assert not torch.allclose(ff_tanh(x), ff_none(x))


def test_rest_2b_on_meta_device_has_about_two_billion_parameters():
    with torch.device("meta"):
        model = A2VDiT(RESTConfig.preset("rest-2b").dit)
    count = sum(p.numel() for p in model.parameters())
    assert 2.0e9 < count < 2.3e9, count


def test_speech_window_is_the_latent_frame_plus_its_context():
    assert SpeechConfig().window == 32
    assert SpeechConfig(context_left=4, context_right=0).window == 20
    with pytest.raises(ValueError, match=">= 0"):
        SpeechConfig(context_right=-1)


def test_a_checkpoint_from_before_context_noise_commits_its_chunks_as_made():
    d = RESTConfig.preset("rest-demo").to_dict()
    del d["sampler"]["context_noise"]
    assert RESTConfig.from_dict(d).sampler.context_noise == 0.0


def test_old_config_json_without_a_speech_section_gets_the_defaults():
    d = RESTConfig.preset("rest-2b").to_dict()
    del d["speech"]
    assert RESTConfig.from_dict(d).speech == SpeechConfig()


@pytest.mark.parametrize("field, value", [("hidden", 1_000_000), ("depth", 10_000), ("speech_dim", 2.5),
                                          ("heads", True)])
def test_a_config_with_a_size_no_machine_can_hold_is_refused_naming_the_field(field, value):
    d = RESTConfig.preset("rest-demo").to_dict()
    d["dit"][field] = value
    with pytest.raises(ValueError, match=rf"config dit\.{field}=.*expected whole numbers from 1 to"):
        RESTConfig.from_dict(d)


def test_every_preset_is_within_the_size_limits():
    for name in ("rest-2b", "rest-demo"):
        assert RESTConfig.preset(name).to_dict() == RESTConfig.from_dict(RESTConfig.preset(name).to_dict()).to_dict()
