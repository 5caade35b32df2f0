import pytest
import torch

from rest_core import IDContextCache

S, L = 9, 18  # latent_size 3, chunk_latents 2


def make(tiny_config, **kw):
    return IDContextCache(tiny_config, batch=2, latent_size=3, chunk_latents=2, **kw)


def visible(cache, chunk_index):
    start, mask = cache.window(chunk_index)
    keys = torch.zeros(S + 2 * L, dtype=torch.bool)
    keys[start:] = True if mask is None else mask.flatten()[start:]
    return keys[:S].all().item(), keys[S : S + L].all().item(), keys[S + L :].all().item(), keys[:S].any().item()


@pytest.mark.parametrize("id_sink, context_cache, first, later", [
    (True, True, (True, False, True), (True, True, True)),
    (False, True, (True, False, True), (False, True, True)),
    (True, False, (True, False, True), (True, False, True)),
    (False, False, (True, False, True), (False, False, True)),
])
def test_window_shows_sink_context_and_current_as_the_switches_say(tiny_config, id_sink, context_cache, first, later):
    cache = make(tiny_config, id_sink=id_sink, context_cache=context_cache)
    assert visible(cache, 0)[:3] == first
    for k in (1, 2, 1000):
        sink_all, context, current, sink_any = visible(cache, k)
        assert (sink_all, context, current) == later and sink_any == sink_all


def test_buffers_are_preallocated_for_sink_context_current_and_every_cfg_branch(tiny_config):
    cache = make(tiny_config, branches=2, text_tokens=5)
    depth, heads, hd = tiny_config.depth, tiny_config.heads, tiny_config.head_dim
    assert cache.k.shape == cache.v.shape == (depth, 4, heads, S + 2 * L, hd)
    assert cache.text_k.shape == (depth, 4, heads, 5, hd)


def test_shared_slots_are_written_to_every_branch_from_the_conditional_rows(tiny_config):
    cache = make(tiny_config, branches=2)
    rows = torch.arange(4.0).view(4, 1, 1, 1).expand(4, tiny_config.heads, L, tiny_config.head_dim)
    cache.write_shared(cache.k, 1, cache.context_start, rows)
    context = cache.k[1, :, :, S : S + L]
    assert context[:, 0, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]  # rows 0-1 conditional, copied into the null branch
    assert cache.k[1, :, :, :S].eq(0).all() and cache.k[0].eq(0).all()


@pytest.mark.parametrize("id_sink", [True, False])
@pytest.mark.parametrize("context_cache", [True, False])
def test_the_cache_the_masked_sequence_pass_and_the_flop_count_follow_one_visibility_rule(tiny_config, id_sink,
                                                                                          context_cache):
    from rest_core.cache import chunk_visibility
    from rest_core.dit import SequenceAttention
    from rest_core.flops import stream_window

    chunks = 4
    cache = make(tiny_config, id_sink=id_sink, context_cache=context_cache)
    sequence = SequenceAttention(tiny_config, chunks=chunks, chunk_latents=2, latent_size=3, device="cpu",
                                 dtype=torch.float32, id_sink=id_sink, context_cache=context_cache).mask
    for k in range(chunks):
        sink, context = chunk_visibility(k, id_sink, context_cache)
        assert visible(cache, k)[:2] == (sink, context)
        row = sequence[S + k * L]  # the first query of chunk k: keys [K sink copies || every chunk's tokens]
        tokens = row[chunks * S:].view(chunks, L)
        assert row[k * S:(k + 1) * S].all().item() == sink
        assert (tokens[k - 1].all().item() if k else False) == context and tokens[k].all()
        unseen = [j for j in range(chunks) if j != k and not (context and j == k - 1)]
        assert not tokens[unseen].any() and row[:chunks * S].sum() == (S if sink else 0)
        assert stream_window(3, 2, k, id_sink, context_cache) == (S + 2 * L if sink else 2 * L if context else L)
