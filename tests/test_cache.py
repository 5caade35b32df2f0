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
