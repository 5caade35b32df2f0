import dataclasses

import pytest
import torch

from rest_core import A2VDiT, IDContextCache, sequence_timesteps

B, C, SIZE, CHUNK, K = 2, 8, 3, 2, 4


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        ref=torch.randn(B, C, 1, SIZE, SIZE, generator=g),
        chunks=torch.randn(B, C, K * CHUNK, SIZE, SIZE, generator=g),
        speech=torch.randn(B, K * CHUNK, 2, 12, generator=g),
        text=torch.randn(B, 5, 16, generator=g),
        t=torch.rand(B, K, generator=g),
    )


def stream_velocities(model, x, id_sink, context_cache):
    cache = IDContextCache(model.config, batch=B, latent_size=SIZE, chunk_latents=CHUNK, text_tokens=5,
                           id_sink=id_sink, context_cache=context_cache)
    model.prefill(cache, x["ref"], x["text"])
    out = []
    for k in range(K):
        frames = slice(k * CHUNK, (k + 1) * CHUNK)
        # per-token timesteps, the same ones the full pass gets
        t = x["t"][:, k : k + 1].expand(B, CHUNK * SIZE * SIZE)
        out.append(model.forward_chunk(x["chunks"][:, :, frames], t, x["speech"][:, frames], cache, k, commit=True))
    return torch.cat(out, dim=2)


@pytest.mark.parametrize("id_sink, context_cache", [(True, True), (False, True), (True, False), (False, False)])
def test_streaming_through_the_cache_equals_the_full_pass_with_the_streaming_mask(tiny_model, id_sink, context_cache):
    x = inputs()
    with torch.no_grad():
        streamed = stream_velocities(tiny_model, x, id_sink, context_cache)
        full = tiny_model.forward_sequence(
            torch.cat([x["ref"], x["chunks"]], dim=2), sequence_timesteps(x["t"], CHUNK, SIZE), x["speech"],
            x["text"], chunk_latents=CHUNK, id_sink=id_sink, context_cache=context_cache)
    assert streamed.shape == full.shape == (B, C, K * CHUNK, SIZE, SIZE)
    torch.testing.assert_close(streamed, full, atol=2e-5, rtol=1e-4)


def test_each_switch_changes_what_later_chunks_see(tiny_model):
    x = inputs()
    with torch.no_grad():
        full = stream_velocities(tiny_model, x, True, True)
        for switches in ((False, True), (True, False)):
            ablated = stream_velocities(tiny_model, x, *switches)
            # the first chunk sees the same keys either way; later chunks do not
            torch.testing.assert_close(ablated[:, :, :CHUNK], full[:, :, :CHUNK])
            assert (ablated[:, :, CHUNK:] - full[:, :, CHUNK:]).abs().max() > 1e-3


def test_global_attention_teacher_sees_more_than_the_streaming_mask(tiny_model):
    x = inputs()
    seq = torch.cat([x["ref"], x["chunks"]], dim=2)
    t = sequence_timesteps(x["t"], CHUNK, SIZE)
    with torch.no_grad():
        stream = tiny_model.forward_sequence(seq, t, x["speech"], x["text"], chunk_latents=CHUNK)
        teacher = tiny_model.forward_sequence(seq, t, x["speech"], x["text"], chunk_latents=CHUNK,
                                              global_attention=True)
        # the teacher's last chunk must react to the first chunk's content, the student's must not
        changed = seq.clone()
        changed[:, :, 1] += 1.0
        stream2 = tiny_model.forward_sequence(changed, t, x["speech"], x["text"], chunk_latents=CHUNK)
        teacher2 = tiny_model.forward_sequence(changed, t, x["speech"], x["text"], chunk_latents=CHUNK,
                                               global_attention=True)
    last = slice((K - 1) * CHUNK, K * CHUNK)
    torch.testing.assert_close(stream2[:, :, last], stream[:, :, last])
    assert (teacher2[:, :, last] - teacher[:, :, last]).abs().max() > 1e-3


def test_reference_tokens_keep_t_zero_in_per_token_timesteps():
    t = sequence_timesteps(torch.tensor([[0.3, 0.7]]), chunk_latents=2, latent_size=3)
    assert t.shape == (1, 9 + 2 * 18)
    assert t[0, :9].eq(0).all() and t[0, 9:27].eq(0.3).all() and t[0, 27:].eq(0.7).all()


def test_speech_of_frame_j_only_reaches_frame_j(tiny_config):
    # one block: self-attention comes before the speech cross-attention, so nothing can spread it further
    torch.manual_seed(0)
    model = A2VDiT(dataclasses.replace(tiny_config, depth=1)).eval()
    x = inputs()
    with torch.no_grad():
        base = stream_velocities(model, x, True, True)
        x["speech"][:, 1] += 3.0  # frame 1 of chunk 0
        moved = stream_velocities(model, x, True, True)
    diff = (moved - base).abs().amax(dim=(0, 1, 3, 4))  # per latent frame
    assert diff[1] > 1e-3
    assert diff[0] == 0 and diff[2:].eq(0).all()


def test_null_rows_of_a_cfg_batch_do_not_disturb_the_conditional_rows(tiny_model):
    x = inputs()
    chunk = x["chunks"][:, :, :CHUNK]
    t = x["t"][:, 0]
    with torch.no_grad():
        alone = IDContextCache(tiny_model.config, batch=B, latent_size=SIZE, chunk_latents=CHUNK, text_tokens=5)
        tiny_model.prefill(alone, x["ref"], x["text"])
        v_cond = tiny_model.forward_chunk(chunk, t, x["speech"][:, :CHUNK], alone, 0)
        both = IDContextCache(tiny_model.config, batch=B, branches=2, latent_size=SIZE, chunk_latents=CHUNK,
                              text_tokens=5)
        tiny_model.prefill(both, x["ref"], x["text"])
        v = tiny_model.forward_chunk(torch.cat([chunk, chunk]), t.repeat(2), x["speech"][:, :CHUNK], both, 0)
    torch.testing.assert_close(v[:B], v_cond, atol=1e-6, rtol=1e-5)
    assert (v[B:] - v[:B]).abs().max() > 1e-3  # the null branch really dropped speech and text


@pytest.mark.parametrize("change, word", [
    (lambda a: a.update(x=torch.randn(B, C + 1, CHUNK, SIZE, SIZE)), r"x: expected shape \[rows, C=8"),
    (lambda a: a.update(x=torch.randn(B, C, CHUNK + 1, SIZE, SIZE)), "chunk_latents=2"),
    (lambda a: a.update(speech=torch.randn(B, CHUNK - 1, 2, 12)), r"speech: expected shape \[B, frames=2"),
    (lambda a: a.update(speech=torch.randn(B, CHUNK, 3, 12)), "h_w=2"),
    (lambda a: a.update(t=torch.rand(B + 1)), r"t: expected shape \[B=2\]"),
])
def test_forward_chunk_rejects_wrong_shapes_with_the_expected_shape(tiny_model, change, word):
    cache = IDContextCache(tiny_model.config, batch=B, latent_size=SIZE, chunk_latents=CHUNK)
    args = dict(x=torch.randn(B, C, CHUNK, SIZE, SIZE), t=torch.rand(B), speech=torch.randn(B, CHUNK, 2, 12))
    change(args)
    with pytest.raises(ValueError, match=word):
        tiny_model.forward_chunk(args["x"], args["t"], args["speech"], cache, 0)


def test_forward_sequence_rejects_partial_chunks_and_per_row_timesteps(tiny_model):
    with pytest.raises(ValueError, match=r"1 \+ K\*2 latent frames"):
        tiny_model.forward_sequence(torch.randn(1, C, 4, SIZE, SIZE), torch.rand(1, 36), torch.randn(1, 3, 2, 12),
                                    chunk_latents=CHUNK)
    with pytest.raises(ValueError, match=r"sequence_timesteps.*\[B=1, tokens=45\]"):
        tiny_model.forward_sequence(torch.randn(1, C, 5, SIZE, SIZE), torch.rand(1), torch.randn(1, 4, 2, 12),
                                    chunk_latents=CHUNK)


def test_model_runs_in_bfloat16(tiny_model):
    model = tiny_model.to(torch.bfloat16)
    x = inputs()
    cache = IDContextCache(model.config, batch=B, latent_size=SIZE, chunk_latents=CHUNK, text_tokens=5,
                           dtype=torch.bfloat16)
    with torch.no_grad():
        model.prefill(cache, x["ref"].bfloat16(), x["text"].bfloat16())
        v = model.forward_chunk(x["chunks"][:, :, :CHUNK].bfloat16(), x["t"][:, 0], x["speech"][:, :CHUNK].bfloat16(),
                                cache, 0)
    assert v.dtype == torch.bfloat16 and torch.isfinite(v).all()
