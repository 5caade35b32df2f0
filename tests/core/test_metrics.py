import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rest_core.eval import metrics


def smooth_video(frames=96, size=32, seed=0):
    """A slowly drifting colour field: small, even frame-to-frame changes."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, size, size, 3, generator=g) * 0.5
    t = torch.arange(frames, dtype=torch.float32)[:, None, None, None]
    return (base + 0.3 * torch.sin(t / 15 + base * 6)).clamp(0, 1)


def test_pearson_is_one_for_an_affine_copy_and_zero_for_a_constant():
    x = np.sin(np.arange(50) / 3)
    assert metrics.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert metrics.pearson(x, -x) == pytest.approx(-1.0)
    assert metrics.pearson(x, np.ones(50)) == 0.0


def test_seam_ratio_is_near_one_for_a_smooth_video_and_large_when_chunks_jump():
    video = smooth_video()
    assert metrics.seam_ratio(video, 24) == pytest.approx(1.0, abs=0.25)
    jumped = video.clone()
    for k in range(24, 96, 24):
        jumped[k:] = (jumped[k:] + 0.2).clamp(0, 1)  # each chunk starts off where the last one ended
    assert metrics.seam_ratio(jumped, 24) > 3


def test_seam_ratio_needs_a_chunk_boundary():
    with pytest.raises(ValueError, match="boundary"):
        metrics.seam_ratio(smooth_video(frames=20), 24)


def test_identity_error_ignores_a_small_mouth_and_sees_a_colour_change():
    truth = smooth_video(frames=4, size=128)
    mouth = truth.clone()
    mouth[:, 90:100, 56:72] = 0  # a 10 x 16 dark mouth
    recoloured = (truth + torch.tensor([0.15, -0.1, 0.0])).clamp(0, 1)
    small = metrics.identity_error(mouth, truth).mean()
    large = metrics.identity_error(recoloured, truth).mean()
    assert small < 0.01 < 0.08 < large


def test_psnr_and_ssim_are_perfect_for_identical_frames_and_fall_with_noise():
    truth = smooth_video(frames=3, size=48)
    noisy = (truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert metrics.ssim(truth, truth) == pytest.approx(1.0, abs=1e-5)
    assert metrics.psnr(truth, truth) > 90
    assert 15 < metrics.psnr(noisy, truth) < 25
    assert metrics.ssim(noisy, truth) < 0.9


def test_appearance_fidelity_forgives_head_motion_and_the_mouth_but_not_a_new_look():
    portrait = smooth_video(frames=1, size=64)[0]
    box = [20, 40, 44, 60]
    moved = torch.roll(portrait, shifts=(1, -2), dims=(0, 1))[None]  # the head moved 2 px: within 64 / 32
    talking = portrait.clone()[None]
    talking[0, 42:58, 22:42] = 1.0  # only the mouth changed
    recoloured = (portrait * 0.7 + 0.2)[None]
    assert metrics.appearance_fidelity(talking, portrait, box)[0] > 90
    assert metrics.appearance_fidelity(moved, portrait, box)[0] > 35  # only the rolled-in edge differs
    assert metrics.appearance_fidelity(moved, portrait, box, max_shift=0)[0] < 30
    assert metrics.appearance_fidelity(recoloured, portrait, box)[0] < 25
    assert metrics.appearance_fidelity(torch.cat([talking, recoloured]), portrait, box).shape == (2,)


def test_appearance_fidelity_is_the_best_shifts_psnr_for_every_frame_of_a_long_stream():
    """Against the measure computed shift by shift, on more frames than are transformed together."""
    g = torch.Generator().manual_seed(3)
    portrait = torch.rand(24, 20, 3, generator=g)
    box, s = [5, 12, 14, 18], 2
    frames = torch.stack([torch.roll(portrait, shifts=(k % 3 - 1, 1 - k % 2), dims=(0, 1))
                          + 0.02 * k * torch.rand(24, 20, 3, generator=g)
                          for k in range(metrics.FIDELITY_BLOCK + 5)]).clamp(0, 1)
    keep = torch.ones(24, 20)
    keep[12:18, 5:14] = 0
    direct = torch.full((len(frames),), -1.0)
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            f = torch.roll(frames, shifts=(-dy, -dx), dims=(1, 2))  # f[y, x] = frame[y + dy, x + dx]
            valid = torch.zeros(24, 20)
            valid[max(0, -dy):24 - max(0, dy), max(0, -dx):20 - max(0, dx)] = 1
            m = (keep * valid)[None, :, :, None]
            mse = ((f - portrait).square() * m).sum(dim=(1, 2, 3)) / (3 * m.sum())
            direct = torch.maximum(direct, 10 * torch.log10(1 / mse.clamp_min(1e-10)))
    measured = metrics.appearance_fidelity(frames, portrait, box, max_shift=s)
    assert torch.allclose(measured, direct, atol=1e-3)
    assert measured[0] > 90 > measured[-1]  # frame 0 is the portrait moved within the shifts: nothing differs


def test_mouth_motion_is_the_share_of_the_mouths_change_a_video_keeps():
    truth = torch.full((20, 64, 64, 3), 0.5)
    opening = torch.rand(20, generator=torch.Generator().manual_seed(0))[:, None, None, None]
    truth[:, 40:48, 24:40] = opening  # the mouth opens and closes; nothing else moves
    box = [24, 40, 40, 48]
    half = truth.clone()
    half[:, 40:48, 24:40] = 0.5 + (opening - 0.5) / 2
    moved_elsewhere = torch.full_like(truth, 0.5)
    moved_elsewhere[:, :8] = opening  # motion outside the box does not count
    assert metrics.mouth_motion(truth, truth, box) == pytest.approx(1.0)
    assert metrics.mouth_motion(half, truth, box) == pytest.approx(0.5, abs=1e-5)
    assert metrics.mouth_motion(moved_elsewhere, truth, box) == 0.0


def test_ssim_in_blocks_of_separable_blurs_equals_one_11x11_gaussian_over_every_frame():
    torch.manual_seed(0)
    truth = torch.rand(2 * metrics.SSIM_BLOCK + 3, 24, 20, 3)
    frames = (truth + 0.2 * torch.randn_like(truth)).clamp(0, 1)
    g = torch.exp(-((torch.arange(11) - 5) ** 2) / (2 * 1.5**2))
    kernel = ((g / g.sum())[:, None] * (g / g.sum())[None, :])[None, None].float()
    x, y = metrics.luma(frames), metrics.luma(truth)
    mx, my = F.conv2d(x, kernel), F.conv2d(y, kernel)
    vx, vy = F.conv2d(x * x, kernel) - mx**2, F.conv2d(y * y, kernel) - my**2
    cov = F.conv2d(x * y, kernel) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert metrics.ssim(frames, truth) == pytest.approx(float(expected.double().mean()), abs=1e-6)
