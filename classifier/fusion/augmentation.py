"""Random image augmentation on uint8 batches (torch): the from-pixels trainers and the cached views of
``prepared.cache_view`` draw the same flips, scales/shifts and colour changes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from classifier.fusion.data import WHITE_LEVEL


def non_white(x: torch.Tensor) -> torch.Tensor:
    """[batch, h, w] 1.0 where a uint8 [batch, 3, h, w] pixel is not studio white (a channel below
    :data:`WHITE_LEVEL`)."""
    return (x < WHITE_LEVEL).any(1).float()


def foreground_share(mask: torch.Tensor, cell: int = 8) -> torch.Tensor:
    """Share of non-white pixels per ``cell`` x ``cell`` block of a [batch, h, w] mask: the weak label that
    keeps the spatial attention on the product rather than the studio background (stride 8: the attention
    map's grid)."""
    return F.avg_pool2d(mask[:, None], cell)[:, 0]


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flip, scale/shift and brightness/contrast on a uint8 batch -> float [0, 1]."""
    return augment_with_foreground(x, gen, foreground=False)[0]


def augment_with_foreground(
    x: torch.Tensor, gen: torch.Generator, *, foreground: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`augment`, plus (``foreground``) the non-white pixel mask [batch, h, w] of the raw uint8 batch
    moved by the same flip and scale/shift (before the colour change, which would move the white level):
    the weak label of the spatial attention when a backbone trains end to end from pixels. The random draws
    are the same as :func:`augment`'s."""
    mask = non_white(x)[:, None] if foreground else None
    x = x.float() / 255.0
    if mask is not None:
        x = torch.cat([x, mask], 1)
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    scale = 0.8 + 0.25 * torch.rand(n, generator=gen)
    tx, ty = (torch.rand(2, n, generator=gen) - 0.5) * 0.2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    fg = None
    if mask is not None:
        x, fg = x[:, :3], x[:, 3]
    b = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.3
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.3
    m = x.mean((1, 2, 3), keepdim=True)
    return ((x - m) * c + m * b).clamp(0, 1), fg
