"""The F-LMM mask decoder: a small U-Net from stacked attention maps to one mask-logit channel.

Layout (paper Sec. 3.2 and its reference config): four stages of two 3x3 convs (64/128/256/512 channels at
base width 64), three max-pool downsamplings, GroupNorm with one group, bilinear x2 upsampling followed by a
1x1 conv, skip concatenation, two 3x3 convs per decoder stage, and a 1x1 conv to one logit channel. At the
default width and 1024 input maps this has about 7.8 M parameters.

Optional language conditioning (``cue_width > 0``, an flmm extension, not in the paper): the maps say where
the LMM looked, not what the phrase asks of those places ("the LEFT-MOST circle"). With a cue, two
coordinate channels (x, y in [-1, 1] over the canvas) join the maps, and every stage's features are
modulated by the phrase's cue vector (FiLM: ``x * (1 + gamma) + beta``, one linear layer per stage,
zero-initialised so that training starts from the plain U-Net).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from flmm.errors import InputError


def _conv_norm_act(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    # no conv bias: GroupNorm's affine shift makes it redundant
    return [
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.GroupNorm(1, cout),
        nn.ReLU(inplace=True),
    ]


class DoubleConv(nn.Sequential):
    """Two (3x3 conv, GroupNorm(1), ReLU) layers: ``(B, cin, h, w) -> (B, cout, h, w)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(*_conv_norm_act(cin, cout, 3), *_conv_norm_act(cout, cout, 3))


class UpBlock(nn.Module):
    """Bilinear x2 upsampling + 1x1 conv, concatenation with the skip, then :class:`DoubleConv`.

    ``(B, cin, h, w), skip (B, cout, 2h, 2w) -> (B, cout, 2h, 2w)``.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(*_conv_norm_act(cin, cout, 1))
        self.fuse = DoubleConv(2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([skip, self.reduce(x)], dim=1))


class UNetDecoder(nn.Module):
    """U-Net mask decoder.

    Args:
        in_channels: number of stacked attention maps (num_grids * M * N).
        base_width: channels of the first stage; stage ``i`` has ``base_width * 2**i``.
        depth: number of downsamplings (3 in the paper).
        cue_width: width of the per-phrase cue vector that conditions every stage (0: none, the paper).
    """

    def __init__(self, in_channels: int, base_width: int = 64, depth: int = 3, cue_width: int = 0) -> None:
        super().__init__()
        if in_channels < 1 or base_width < 1 or depth < 1 or cue_width < 0:
            raise ValueError(
                f"bad U-Net sizes: in={in_channels}, width={base_width}, depth={depth}, cue={cue_width}"
            )
        self.in_channels = in_channels
        self.depth = depth
        #: run the convolutions on channels-last tensors (faster; False only to measure the difference)
        self.channels_last = True
        self.cue_width = cue_width
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(in_channels + (2 if cue_width else 0), widths[0])
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(UpBlock(widths[i + 1], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], 1, kernel_size=1)
        self.film = nn.ModuleList()
        if cue_width:
            # stem, each down stage, each up stage; zero weights: gamma = beta = 0 at the start
            for width in [*widths, *reversed(widths[:-1])]:
                layer = nn.Linear(cue_width, 2 * width)
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
                self.film.append(layer)

    def _modulate(self, x: torch.Tensor, stage: int, cue: torch.Tensor | None) -> torch.Tensor:
        if cue is None:
            return x
        gamma, beta = self.film[stage](cue)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + gamma) + beta

    def forward(self, maps: torch.Tensor, cue: torch.Tensor | None = None) -> torch.Tensor:
        """``maps (B, in_channels, S, S)`` float -> mask logits ``(B, S, S)`` on the same canvas cells.

        ``S`` must be divisible by ``2**depth``; the head always feeds a padded square canvas. ``cue``
        ``(B, cue_width)`` is required exactly when the decoder was built with ``cue_width > 0``.
        """
        if maps.dim() != 4 or maps.shape[1] != self.in_channels:
            raise InputError(f"U-Net expects (B, {self.in_channels}, S, S) maps, got {tuple(maps.shape)}")
        h, w = maps.shape[-2:]
        step = 2**self.depth
        if h % step or w % step:
            raise InputError(f"U-Net input {h}x{w} must be divisible by {step}")
        dtype = self.out.weight.dtype
        x = maps.to(dtype)
        if self.cue_width:
            if cue is None or tuple(cue.shape) != (maps.shape[0], self.cue_width):
                got = None if cue is None else tuple(cue.shape)
                raise InputError(
                    f"this U-Net is conditioned: pass cue ({maps.shape[0]}, {self.cue_width}), got {got}"
                )
            cue = cue.to(dtype)
            ys = torch.linspace(-1, 1, h, device=x.device, dtype=dtype)
            xs = torch.linspace(-1, 1, w, device=x.device, dtype=dtype)
            grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # (2, h, w): x then y
            x = torch.cat([x, grid.expand(x.shape[0], -1, -1, -1)], dim=1)
        elif cue is not None:
            raise InputError("this U-Net has no language conditioning (cue_width=0): do not pass a cue")
        # channels-last: convolutions of few channels at canvas resolution run ~1.5x faster (forward +
        # backward, CPU; python -m benchmarks.unet_layout); same values up to float rounding
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        stage = 0
        x = self._modulate(self.stem(x), stage, cue)
        skips = [x]
        for block in self.down:
            stage += 1
            x = self._modulate(block(F.max_pool2d(x, 2)), stage, cue)
            skips.append(x)
        skips.pop()  # the deepest features are x itself
        for block in self.up:
            stage += 1
            x = self._modulate(block(x, skips.pop()), stage, cue)
        return self.out(x)[:, 0]
