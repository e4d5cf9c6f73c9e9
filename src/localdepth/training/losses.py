"""The losses of the Depth Anything V2 recipes, per image, on PyTorch tensors.

Shapes: ``pred``, ``target`` ``(N, H, W)`` float, ``mask`` ``(N, H, W)`` bool (the valid pixels);
every function returns ``(N,)``, one loss per image, so that a batch is the mean of its images:
gradient accumulation and data-parallel training (each worker averaging its share) then give
exactly the gradient of the whole batch. An image with fewer than :data:`MIN_PIXELS` valid pixels
gets 0 and is left out of the mean by the caller (:func:`batch_mean`).

* **metric**: :func:`silog` (Depth Anything V2's ``metric_depth/util/loss.py``:
  ``sqrt(mean(d^2) - lambda * mean(d)^2)``, ``d = ln target - ln pred``, ``lambda = 0.5``). The
  official code takes the mean over the valid pixels of the whole batch; here it is per image.
* **relative**: :func:`relative_loss` = :func:`ssi` + ``alpha`` x :func:`gradient_matching` in
  disparity space (MiDaS, Ranftl et al. 2020, eq. 4-7 and 11; Depth Anything V1/V2: weights 1 : 2).
  Both maps are normalised per image by their median ``t`` and mean absolute deviation ``s``
  over the valid pixels, ``d^ = (d - t) / s``; the scale-and-shift-invariant loss is the mean of
  ``|d^_pred - d^_target|``; the gradient-matching term is the mean absolute gradient of the
  difference ``R = d^_pred - d^_target`` at 4 scales (every 2^k-th pixel), as MiDaS's
  ``GradientLoss``.
"""

from __future__ import annotations

import torch

#: fewer valid pixels than this in an image (a crop of sparse LiDAR, say): the image is left out
MIN_PIXELS = 16
SILOG_LAMBDA = 0.5
GRADIENT_WEIGHT = 2.0  # Depth Anything V2: L_ssi : L_gm = 1 : 2
GRADIENT_SCALES = 4


def _count(mask: torch.Tensor) -> torch.Tensor:
    return mask.flatten(1).sum(1)


def usable(mask: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: the images with enough valid pixels to contribute."""
    return _count(mask) >= MIN_PIXELS


def silog(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, lambd: float = SILOG_LAMBDA,
          eps: float = 1e-6) -> torch.Tensor:
    """Scale-invariant log loss per image (metres in, both positive where ``mask``)."""
    pred, target = pred.float(), target.float()
    n = _count(mask).clamp(min=1).float()
    # masked-out pixels may hold anything (0, inf): they are replaced before the logarithm
    one = torch.ones_like(pred)
    d = torch.where(mask, torch.log(torch.where(mask, target, one).clamp(min=eps))
                    - torch.log(torch.where(mask, pred, one).clamp(min=eps)), torch.zeros_like(pred))
    mean_d2 = (d * d).flatten(1).sum(1) / n
    mean_d = d.flatten(1).sum(1) / n
    value = (mean_d2 - lambd * mean_d * mean_d).clamp(min=0.0)
    # sqrt has an infinite slope at 0 (a perfect prediction): the epsilon keeps the gradient finite
    return torch.where(usable(mask), torch.sqrt(value + 1e-12), torch.zeros_like(value))


def _masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(N,)`` median of ``x[i][mask[i]]`` (the lower one of an even count, as ``torch.median``)."""
    flat = torch.where(mask, x, torch.full_like(x, torch.inf)).flatten(1)
    n = _count(mask)
    ordered = flat.sort(dim=1).values
    index = ((n - 1).clamp(min=0) // 2).long()
    return ordered.gather(1, index[:, None])[:, 0]


def normalise(d: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(d - median) / mean|d - median|`` per image over the valid pixels (MiDaS's affine-invariant
    normalisation); 0 outside the mask."""
    d = torch.where(mask, d.float(), torch.zeros_like(d, dtype=torch.float32))
    t = _masked_median(d, mask)
    centred = torch.where(mask, d - t[:, None, None], torch.zeros_like(d))
    s = centred.abs().flatten(1).sum(1) / _count(mask).clamp(min=1)
    return centred / s.clamp(min=eps)[:, None, None]  # a flat map stays flat (0), not infinite


def _mean_abs(pred_n: torch.Tensor, target_n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    diff = torch.where(mask, (pred_n - target_n).abs(), torch.zeros_like(pred_n))
    return diff.flatten(1).sum(1) / _count(mask).clamp(min=1)


def ssi(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale-and-shift-invariant loss per image: mean ``|normalise(pred) - normalise(target)|``."""
    value = _mean_abs(normalise(pred, mask), normalise(target, mask), mask)
    return torch.where(usable(mask), value, torch.zeros_like(value))


def gradient_matching(pred_n: torch.Tensor, target_n: torch.Tensor, mask: torch.Tensor,
                      scales: int = GRADIENT_SCALES) -> torch.Tensor:
    """MiDaS's multi-scale gradient-matching term per image, on normalised maps: at each scale
    ``k`` (every ``2^k``-th pixel), the sum of ``|dR/dx| + |dR/dy|`` over pixel pairs valid on both
    sides divided by the valid pixels of that scale; summed over the scales."""
    total = torch.zeros(pred_n.shape[0], dtype=torch.float32, device=pred_n.device)
    for k in range(scales):
        step = 2 ** k
        m = mask[:, ::step, ::step].float()
        r = torch.where(mask, pred_n - target_n, torch.zeros_like(pred_n))[:, ::step, ::step]
        gx = (r[:, :, 1:] - r[:, :, :-1]).abs() * (m[:, :, 1:] * m[:, :, :-1])
        gy = (r[:, 1:, :] - r[:, :-1, :]).abs() * (m[:, 1:, :] * m[:, :-1, :])
        n = m.flatten(1).sum(1)
        total = total + (gx.flatten(1).sum(1) + gy.flatten(1).sum(1)) / n.clamp(min=1)
    return torch.where(usable(mask), total, torch.zeros_like(total))


def relative_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                  alpha: float = GRADIENT_WEIGHT) -> torch.Tensor:
    """The relative recipe: disparities in (``pred`` as the network gives it, ``target`` = 1 / depth);
    :func:`ssi` + ``alpha`` x :func:`gradient_matching` of the normalised maps, per image."""
    pred_n, target_n = normalise(pred, mask), normalise(target, mask)
    value = _mean_abs(pred_n, target_n, mask) + alpha * gradient_matching(pred_n, target_n, mask)
    return torch.where(usable(mask), value, torch.zeros_like(value))


def disparity(depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 / depth where ``mask``, 0 elsewhere (the relative recipe's target)."""
    return torch.where(mask, 1.0 / depth.clamp(min=1e-6), torch.zeros_like(depth))


def batch_mean(per_image: torch.Tensor, mask: torch.Tensor, count: float | torch.Tensor) -> torch.Tensor:
    """Sum of the usable images' losses divided by ``count``: the number of usable images in the
    whole optimiser step (all micro-batches, all workers), so that the pieces add up to its mean."""
    return (per_image * usable(mask)).sum() / count
