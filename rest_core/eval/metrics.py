"""Quality measurements for generated talking-head video against ground truth known from the synthetic corpus.

Frames are float tensors [T, H, W, 3] in [0, 1]; generated frame t is compared with ground-truth frame t.

- lip-sync: Pearson correlation over time between the mouth opening the mouth-opening expert reads off the
  generated frames (`rest_core.eval.mouth_expert`) and the corpus' true opening.
- identity error: mean absolute error between the frames' 8x8 area means. Pooling to 16-pixel cells (at 128 px)
  keeps skin, hair, clothes and background colours and the head's layout and drops what the speech and the
  sampler legitimately change (mouth, blinks, small head motion), so a rising error means drifting identity.
- seam ratio: the mean absolute frame-to-frame change across chunk boundaries over the same within chunks; 1 is
  seamless, a chunk that jumps away from its predecessor shows as > 1.
- PSNR and SSIM (Gaussian window 11, sigma 1.5, on luma), the usual frame-fidelity measures.
- appearance fidelity: PSNR of each generated frame against the portrait itself, outside the mouth box, at the
  best translation within 1/32 of the width. Head motion is allowed; a change of look (colours, hair, glasses,
  background) is not. This is what a user sees of "is it still my character".
- mouth motion: how much the mouth box changes over time in the frames, over how much it changes in the ground
  truth; 1 moves as much as the truth, 0 is a still mouth. A reconstruction that opens the mouth half as far as the
  truth reads about 0.5 here, while lip-sync r, blind to amplitude, may still be high.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IDENTITY_GRID = 8


def pearson(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = (a.square().sum() * b.square().sum()).sqrt()
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def identity_error(frames: Tensor, truth: Tensor) -> Tensor:
    """Per-frame error of the 8x8 pooled frames.  [T, H, W, 3] x2 -> [T]"""
    def pooled(x):
        return F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2).float(), IDENTITY_GRID)

    return (pooled(frames) - pooled(truth)).abs().mean(dim=(1, 2, 3))


def frame_changes(frames: Tensor) -> Tensor:
    """Mean absolute change from frame t-1 to frame t, for t = 1 .. T-1.  [T, H, W, 3] -> [T-1]"""
    return (frames[1:].float() - frames[:-1].float()).abs().mean(dim=(1, 2, 3))


def seam_ratio(frames: Tensor, chunk_frames: int) -> float:
    """Mean change across chunk boundaries (frame 24k-1 -> 24k) / mean change within chunks."""
    changes = frame_changes(frames)  # changes[t-1] is the step into frame t
    into = torch.arange(1, frames.shape[0])
    seam = into % chunk_frames == 0
    if not seam.any() or seam.all():
        raise ValueError(f"seam ratio needs frames on both sides of a chunk boundary ({frames.shape[0]} frames, "
                         f"chunks of {chunk_frames})")
    within = changes[~seam].mean()
    return float(changes[seam].mean() / within.clamp_min(1e-8))


def frame_psnr(frames: Tensor, truth: Tensor) -> Tensor:
    """Per frame, in dB, for values in [0, 1].  [T, H, W, 3] x2 -> [T]"""
    mse = (frames.float() - truth.float()).square().mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)


def psnr(frames: Tensor, truth: Tensor) -> float:
    return float(frame_psnr(frames, truth).mean())


def luma(frames: Tensor) -> Tensor:
    """[T, H, W, 3] -> [T, 1, H, W] (BT.601)"""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)
    return (frames.float() * weights).sum(dim=-1)[:, None]


SSIM_BLOCK = 32  # frames ssim blurs together: bounded memory for any stream


def ssim(frames: Tensor, truth: Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM over frames (Wang et al. 2004 constants, data range 1), on luma, valid region only. The Gaussian
    window is separable, and the five maps of SSIM_BLOCK frames are blurred as the channels of one grouped
    convolution: a 60 s stream took about a minute as one single-channel 11 x 11 convolution, under half that so."""
    g = torch.exp(-((torch.arange(window) - window // 2) ** 2) / (2 * sigma**2))
    g = (g / g.sum()).float()
    c1, c2 = 0.01**2, 0.03**2
    total, count = 0.0, 0
    for start in range(0, frames.shape[0], SSIM_BLOCK):
        x, y = luma(frames[start:start + SSIM_BLOCK]), luma(truth[start:start + SSIM_BLOCK])  # [n, 1, H, W]
        n = x.shape[0]
        maps = torch.cat([x, y, x * x, y * y, x * y], dim=1).reshape(1, 5 * n, *x.shape[-2:])
        c = maps.shape[1]
        blurred = F.conv2d(F.conv2d(maps, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c),
                           g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        mx, my, xx, yy, xy = blurred.reshape(n, 5, *blurred.shape[-2:]).unbind(1)  # [n, H', W'] each
        vx, vy, cov = xx - mx**2, yy - my**2, xy - mx * my
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        total, count = total + float(s.double().sum()), count + s.numel()
    return total / count


FIDELITY_BLOCK = 32  # frames appearance_fidelity transforms together: bounded memory for any stream


def shifted_correlation(x: Tensor, k: Tensor, s: int) -> Tensor:
    """sum over pixels p and channels of x[p + d] * k[p], for every shift d = (dy, dx) within +-s, x zero outside its
    frame: x [N, C, H, W], k [C, H, W] -> [N, 2s+1, 2s+1]. By FFT, padded by s so that no shift wraps around."""
    size = (x.shape[-2] + s, x.shape[-1] + s)
    c = torch.fft.irfft2(torch.fft.rfft2(x, size) * torch.fft.rfft2(k, size).conj(), size).sum(-3)
    rows, cols = (torch.arange(-s, s + 1) % n for n in size)
    return c[:, rows[:, None], cols[None, :]]


def appearance_fidelity(frames: Tensor, portrait: Tensor, mouth_box, max_shift: int | None = None) -> Tensor:
    """Per frame, the best PSNR against the portrait over integer shifts within +-max_shift pixels (default: 1/32
    of the width), the mouth box left out.  frames [T, H, W, 3], portrait [H, W, 3] -> [T]

    Frame pixel p + d is compared with portrait pixel p, over the pixels both have. The squared error of every shift
    at once is sum m a(p+d)^2 + sum m r(p)^2 - 2 sum m r(p) a(p+d) (m: outside the mouth box, r: the portrait, a: the
    frame), three correlations, in float64 so that a frame equal to the portrait still scores 100 dB (shift by shift,
    eval's 100 frames at 256 px took about 25 s per row)."""
    t, h, w, _ = frames.shape
    s = max(1, round(w / 32)) if max_shift is None else max_shift
    x0, y0, x1, y1 = (int(round(float(v))) for v in mouth_box)
    keep = torch.ones(1, h, w, dtype=torch.float64)
    keep[:, max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 0
    ref = portrait.to(torch.float64).permute(2, 0, 1)  # [3, H, W]
    inside = torch.ones(1, 1, h, w, dtype=torch.float64)
    count = 3 * shifted_correlation(inside, keep, s)  # [1, 2s+1, 2s+1]: the pixels compared at each shift
    portrait_sq = shifted_correlation(inside, (ref.square() * keep).sum(0, keepdim=True), s)
    best = []
    for start in range(0, t, FIDELITY_BLOCK):
        a = frames[start:start + FIDELITY_BLOCK].to(torch.float64).permute(0, 3, 1, 2)  # [n, 3, H, W]
        se = (shifted_correlation(a.square().sum(1, keepdim=True), keep, s) + portrait_sq
              - 2 * shifted_correlation(a, ref * keep, s))
        mse = (se / count.clamp_min(1)).flatten(1).amin(1)
        best.append(10 * torch.log10(1 / mse.clamp_min(1e-10)))
    return torch.cat(best).float() if best else torch.zeros(0)


def mouth_motion(frames: Tensor, truth: Tensor, mouth_box) -> float:
    """Each mouth-box pixel's spread over time in `frames`, over the same in `truth`, averaged over the box.
    [T, H, W, 3] x2, mouth_box [x0, y0, x1, y1] in pixels"""
    x0, y0, x1, y1 = (round(float(v)) for v in mouth_box)
    x0, y0 = max(x0, 0), max(y0, 0)

    def spread(x: Tensor) -> Tensor:
        return x[:, y0:y1, x0:x1].float().std(dim=0).mean()

    return float(spread(frames) / spread(truth).clamp_min(1e-6))
