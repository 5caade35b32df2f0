import torch

from rest_core.rope import apply_rope, axis_pairs, chunk_times, grid_positions, rotary_table, sink_time


def test_axis_pairs_cover_the_head():
    for head_dim in (8, 32, 64, 128):
        assert sum(axis_pairs(head_dim)) == head_dim // 2


def test_window_geometry_is_the_same_for_every_chunk():
    c = 3
    for k in (0, 1, 999):
        offset = chunk_times(k, c)[0] - sink_time(k, c)
        gap = chunk_times(k, c)[0] - chunk_times(k - 1, c)[0]
        assert (offset, gap) == (c + 1, c)


def test_grid_positions_are_in_f_h_w_token_order():
    pos = grid_positions(torch.tensor([5.0, 6.0]), 2)
    assert pos.shape == (8, 3)
    assert pos[0].tolist() == [5, 0, 0] and pos[1].tolist() == [5, 0, 1] and pos[4].tolist() == [6, 0, 0]


def test_rope_scores_depend_only_on_position_differences():
    torch.manual_seed(0)
    q, k = torch.randn(1, 2, 4, 16), torch.randn(1, 2, 4, 16)

    def scores(first, second):
        pos = grid_positions(torch.tensor([first, second]), 1).repeat(2, 1)
        table = rotary_table(pos, 16, 10_000.0, torch.float32, "cpu")
        return apply_rope(q, table) @ apply_rope(k, table).transpose(-1, -2)

    torch.testing.assert_close(scores(0.0, 3.0), scores(3000.0, 3003.0), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scores(0.0, 3.0), scores(0.0, 4.0), atol=1e-3)


def test_rope_preserves_vector_norms():
    x = torch.randn(2, 3, 10, 16)
    table = rotary_table(grid_positions(torch.arange(10.0), 1), 16, 10_000.0, torch.float32, "cpu")
    torch.testing.assert_close(apply_rope(x, table).norm(dim=-1), x.norm(dim=-1))
