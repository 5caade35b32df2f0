import dataclasses

import pytest
import torch
import torch._dynamo
from torch.utils.flop_counter import FlopCounterMode

import rest_core.cache as cache_module
import rest_core.sampling as sampling
from rest_core import A2VDiT, StreamOptions, flow_schedule, joint_cfg, stream_latents
from rest_core.sampling import sample_sequence

C, SIZE, CHUNK = 8, 4, 3


def refs(seed=0, batch=1, chunks=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, C, 1, SIZE, SIZE, generator=g),
            torch.randn(batch, chunks * CHUNK, 2, 12, generator=g),
            torch.randn(batch, 5, 16, generator=g))


def run(model, *args, **options):
    return [c.latents for c in stream_latents(model, *args, options=StreamOptions(**options))]


def test_schedule_runs_from_one_to_zero_and_shift_moves_steps_to_high_noise():
    plain, shifted = flow_schedule(8, 1.0), flow_schedule(8, 3.0)
    assert plain.shape == (9,) and plain[0] == 1 and plain[-1] == 0
    assert (plain.diff() < 0).all() and (shifted.diff() < 0).all()
    assert (shifted[1:-1] > plain[1:-1]).all()


def test_joint_cfg_with_alpha_one_is_the_conditional_velocity_and_extrapolates_otherwise():
    v_cond, v_null = torch.randn(4, 5), torch.randn(4, 5)
    torch.testing.assert_close(joint_cfg(v_cond, v_null, 1.0), v_cond)
    torch.testing.assert_close(joint_cfg(v_cond, v_null, 6.0), v_null + 6 * (v_cond - v_null))


def test_fixed_seed_gives_bit_identical_latents_and_another_seed_does_not(tiny_model):
    ref, speech, text = refs()
    a = run(tiny_model, ref, speech, text, steps=3, seed=7)
    b = run(tiny_model, ref, speech, text, steps=3, seed=7)
    c = run(tiny_model, ref, speech, text, steps=3, seed=8)
    assert len(a) == 3 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("context_noise", [0.0, 0.3])
def test_cfg_one_equals_the_conditional_pass_alone(tiny_model, context_noise):
    """alpha = 1 must give exactly what a hand-written conditional-only Algorithm 1 gives, each finished chunk
    committed by a pass at t = context_noise over the chunk put back to that noise level."""
    ref, speech, text = refs()
    got = run(tiny_model, ref, speech, text, steps=3, cfg=1.0, seed=3, context_noise=context_noise)

    noise, renoise = torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)
    times = flow_schedule(3, 3.0)
    cache = cache_module.IDContextCache(tiny_model.config, batch=1, latent_size=SIZE, chunk_latents=CHUNK,
                                        text_tokens=5)
    expected = []
    with torch.no_grad():
        tiny_model.prefill(cache, ref, text)
        for k, e in enumerate(speech.split(CHUNK, dim=1)):
            if k:
                put_back = (1 - context_noise) * expected[-1] + context_noise * torch.randn(
                    expected[-1].shape, generator=renoise)
                tiny_model.forward_chunk(put_back, torch.full((1,), context_noise),
                                         speech[:, (k - 1) * CHUNK : k * CHUNK], cache, k - 1, commit=True)
            z = torch.randn(1, C, CHUNK, SIZE, SIZE, generator=noise)
            for i in range(3):
                v = tiny_model.forward_chunk(z, torch.full((1,), times[i].item()), e, cache, k)
                z = z + (times[i + 1] - times[i]).item() * v
            expected.append(z)
    assert all(torch.equal(x, y) for x, y in zip(got, expected))


def test_guidance_changes_the_result(tiny_model):
    ref, speech, text = refs()
    assert not torch.allclose(run(tiny_model, ref, speech, text, steps=2, cfg=1.0)[1],
                              run(tiny_model, ref, speech, text, steps=2, cfg=6.0)[1])


def test_live_speech_pieces_give_the_same_latents_as_one_tensor(tiny_model):
    ref, speech, text = refs()
    whole = run(tiny_model, ref, speech, text, steps=2)
    pieces = run(tiny_model, ref, iter(list(speech.split(CHUNK, dim=1))), text, steps=2)
    assert all(torch.equal(x, y) for x, y in zip(whole, pieces))


def test_a_finished_chunk_is_yielded_before_the_next_speech_is_needed(tiny_model):
    ref, speech, text = refs()
    pulled = []

    def live():
        for i, e in enumerate(speech.split(CHUNK, dim=1)):
            pulled.append(i)
            yield e

    stream = stream_latents(tiny_model, ref, live(), text, options=StreamOptions(steps=2))
    first = next(stream)
    assert first.index == 0 and pulled == [0]
    assert [c.index for c in stream] == [1, 2] and pulled == [0, 1, 2]


def test_streaming_leaves_grad_mode_alone(tiny_model):
    ref, speech, text = refs()
    for _ in stream_latents(tiny_model, ref, speech, text, options=StreamOptions(steps=1)):
        assert torch.is_grad_enabled()


@pytest.mark.slow
def test_chunk_1000_uses_the_positions_flops_and_cache_of_chunk_2(tiny_model, monkeypatch):
    """Cost and positions do not grow with the stream; the cache is allocated once."""
    caches, tables, recording = [], [], [False]

    class Recorded(cache_module.IDContextCache):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            caches.append(self)

    real_rope = cache_module.apply_rope

    def recording_rope(x, table):
        if recording[0]:
            tables.append(table)
        return real_rope(x, table)

    monkeypatch.setattr(sampling, "IDContextCache", Recorded)
    monkeypatch.setattr(cache_module, "apply_rope", recording_rope)
    ref, speech, _ = refs(chunks=1001)
    stream = stream_latents(tiny_model, ref, speech, options=StreamOptions(steps=1, cfg=1.0))
    seen = {}
    for index in range(1001):
        if index in (2, 1000):
            tables.clear()
            recording[0] = True
            with FlopCounterMode(display=False) as counter:
                next(stream)
            recording[0] = False
            seen[index] = ([(t.cos.clone(), t.sin.clone()) for t in tables], counter.get_total_flops(),
                           caches[0].k.data_ptr())
        else:
            next(stream)
    assert len(caches) == 1
    (tables_2, flops_2, ptr_2), (tables_1000, flops_1000, ptr_1000) = seen[2], seen[1000]
    assert flops_2 == flops_1000 > 0
    assert ptr_2 == ptr_1000
    assert len(tables_2) == len(tables_1000) > 0
    for (cos_a, sin_a), (cos_b, sin_b) in zip(tables_2, tables_1000):
        assert torch.equal(cos_a, cos_b) and torch.equal(sin_a, sin_b)


# --- bad input ---------------------------------------------------------------------------------------------------

def expect_error(model, match, ref=None, speech=None, text=None, chunk_latents=CHUNK, **options):
    """Bad arguments fail at the call, before any work or iteration."""
    r, s, t = refs()
    with pytest.raises(ValueError, match=match):
        stream_latents(model, r if ref is None else ref, s if speech is None else speech,
                       t if text is None else text, chunk_latents=chunk_latents,
                       options=StreamOptions(steps=1, **options))


def test_wrong_reference_latent_shape_names_the_expected_shape(tiny_model):
    expect_error(tiny_model, r"ref_latent: expected shape \[B, C=8, frames=1, h, w\]", ref=torch.randn(1, 8, 2, 4, 4))
    expect_error(tiny_model, r"ref_latent: expected shape \[B, C=8", ref=torch.randn(1, 4, 1, 4, 4))
    expect_error(tiny_model, "square latent grid", ref=torch.randn(1, 8, 1, 4, 5))


def test_bad_chunk_size_is_rejected(tiny_model):
    expect_error(tiny_model, "chunk_latents: expected a positive integer", chunk_latents=0)
    expect_error(tiny_model, r"multiple of 2 frames", chunk_latents=2, speech=torch.randn(1, 9, 2, 12))


@pytest.mark.parametrize("cfg", [float("nan"), float("inf"), 0.5, "2"])
def test_a_guidance_scale_that_is_not_a_finite_number_from_1_is_refused(tiny_model, cfg):
    expect_error(tiny_model, "cfg: expected a", cfg=cfg)


def test_a_shift_that_is_not_a_finite_positive_number_is_refused(tiny_model):
    expect_error(tiny_model, "shift: expected a finite number", shift=float("nan"))
    expect_error(tiny_model, "shift: expected a number from 0.001", shift=0.0)


def test_speech_that_does_not_fill_whole_chunks_names_the_expected_shape(tiny_model):
    expect_error(tiny_model, r"speech: expected shape \[B=1, K\*3, h_w=2, d_A=12\]", speech=torch.randn(1, 7, 2, 12))
    expect_error(tiny_model, r"speech: expected shape \[B=1, K\*chunk_latents, h_w=2, d_A=12\]",
                 speech=torch.randn(1, 9, 2, 13))


def test_missing_speech_for_a_chunk_is_reported_with_its_index(tiny_model):
    ref, speech, text = refs()
    pieces = [speech[:, :CHUNK], None]
    stream = stream_latents(tiny_model, ref, iter(pieces), text, options=StreamOptions(steps=1))
    next(stream)
    with pytest.raises(ValueError, match=r"speech for chunk 1 is missing: expected shape \[B=1, chunk_latents=3"):
        next(stream)
    short = iter([speech[:, :CHUNK - 1]])
    with pytest.raises(ValueError, match=r"speech for chunk 0: expected shape \[B=1, chunk_latents=3"):
        next(stream_latents(tiny_model, ref, short, text, options=StreamOptions(steps=1)))


@pytest.mark.parametrize("name", ["ref", "speech", "text"])
def test_nan_in_any_input_is_rejected_by_name(tiny_model, name):
    ref, speech, text = refs()
    bad = {"ref": ref, "speech": speech, "text": text}[name].clone()
    bad.view(-1)[3] = float("nan")
    label = {"ref": "ref_latent", "speech": "speech", "text": "text"}[name]
    expect_error(tiny_model, f"{label} contains NaN", **{name: bad})


def test_text_for_a_model_without_text_attention_is_rejected(tiny_config):
    import dataclasses

    from rest_core import A2VDiT
    model = A2VDiT(dataclasses.replace(tiny_config, text_dim=None)).eval()
    expect_error(model, "no text cross-attention")


def test_unknown_context_refresh_mode_is_rejected(tiny_model):
    expect_error(tiny_model, "context_refresh", context_refresh="sometimes")


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_a_context_noise_outside_zero_to_one_is_refused(tiny_model, bad):
    expect_error(tiny_model, "context_noise", context_noise=bad)


def test_context_noise_changes_the_chunks_after_the_first_and_not_the_first(tiny_model):
    ref, speech, text = refs()
    clean = run(tiny_model, ref, speech, text, steps=2, seed=1, context_noise=0.0)
    noisy = run(tiny_model, ref, speech, text, steps=2, seed=1, context_noise=0.2)
    again = run(tiny_model, ref, speech, text, steps=2, seed=1, context_noise=0.2)
    assert torch.equal(clean[0], noisy[0])  # no context yet: the chunks' own noise is untouched by the option
    assert not torch.allclose(clean[1], noisy[1])
    assert all(torch.equal(a, b) for a, b in zip(noisy, again))


def test_on_step_is_called_after_every_step_and_can_stop_the_stream(tiny_model):
    ref = torch.randn(1, 8, 1, 2, 2)
    speech = torch.randn(1, 6, 2, 12)
    calls = []
    list(stream_latents(tiny_model, ref, speech, chunk_latents=3, options=StreamOptions(steps=4),
                        on_step=lambda k, i: calls.append((k, i))))
    assert calls == [(k, i) for k in range(2) for i in range(4)]

    def stop(k, i):
        if (k, i) == (0, 1):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(stream_latents(tiny_model, ref, speech, chunk_latents=3, on_step=stop, options=StreamOptions(steps=4)))


def test_non_streaming_sampler_gives_streamings_first_chunk_under_the_streaming_mask(tiny_model):
    # chunk 0 sees the sink and itself in both; one Euler step from the same noise must give the same chunk
    torch.manual_seed(1)
    ref = torch.randn(1, 8, 1, 2, 2)
    speech = torch.randn(1, 6, 2, 12)
    seq = sample_sequence(tiny_model, ref, speech, chunk_latents=3, options=StreamOptions(steps=1, cfg=1.0, seed=5),
                          global_attention=False)
    assert seq.shape == (1, 8, 6, 2, 2)
    first = next(stream_latents(tiny_model, ref, speech, chunk_latents=3,
                                options=StreamOptions(steps=1, cfg=1.0, seed=5)))
    torch.testing.assert_close(seq[:, :, :3], first.latents, rtol=1e-4, atol=1e-5)


def test_non_streaming_sampler_is_deterministic_and_guidance_matters(tiny_model):
    ref, speech = torch.randn(1, 8, 1, 2, 2), torch.randn(1, 6, 2, 12)
    a = sample_sequence(tiny_model, ref, speech, chunk_latents=3, options=StreamOptions(steps=2, cfg=3.0, seed=0))
    b = sample_sequence(tiny_model, ref, speech, chunk_latents=3, options=StreamOptions(steps=2, cfg=3.0, seed=0))
    c = sample_sequence(tiny_model, ref, speech, chunk_latents=3, options=StreamOptions(steps=2, cfg=1.0, seed=0))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_non_streaming_sampler_rejects_live_speech(tiny_model):
    with pytest.raises(ValueError, match="one tensor"):
        sample_sequence(tiny_model, torch.randn(1, 8, 1, 2, 2), iter([torch.randn(1, 3, 2, 12)]), chunk_latents=3)


@pytest.mark.slow
def test_compiled_blocks_stream_as_eager_ones_without_running_out_of_recompilations(tiny_config):
    """The blocks share one compilation: were the cache indexed by block number inside the compiled code, every
    block would be its own specialisation and the later ones would fall back to eager."""
    torch.manual_seed(0)
    model = A2VDiT(dataclasses.replace(tiny_config, depth=6)).eval()
    ref, speech, text = refs()
    eager = run(model, ref, speech, text, steps=2, cfg=2.0)
    torch._dynamo.reset()
    try:
        for block in model.transformer_blocks:
            block.compile()
        with torch._dynamo.config.patch(recompile_limit=4, fail_on_recompile_limit_hit=True):
            compiled = run(model, ref, speech, text, steps=2, cfg=2.0)
    finally:
        torch._dynamo.reset()
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
