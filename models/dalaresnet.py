"""DALAResNet50 (Liu et al., IEEE Access 2024/25): ResNet-50 with channel attention after layer4.

Written here because no library ships it. The attention block is adaptive average pool ->
FC (reduce) -> LeakyReLU -> FC (expand) -> ReLU -> channel-wise multiply with the feature map;
the head is two FC layers (2048 -> 512 -> classes) with dropout. Module names of the ResNet
part match torchvision's ``resnet50`` so its ImageNet state dict loads as is.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

__all__ = ["ChannelAttention", "DALAResNet50"]


class ChannelAttention(nn.Module):
    """``y = x * ReLU(W2 LeakyReLU(W1 avgpool(x)))``: re-weights the channels of ``x``."""

    def __init__(self, channels: int, reduction: int = 16, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Linear(channels, channels // reduction)
        self.act = nn.LeakyReLU(negative_slope)
        self.expand = nn.Linear(channels // reduction, channels)
        self.gate = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.gate(self.expand(self.act(self.reduce(self.pool(x).flatten(1)))))
        return x * weights[:, :, None, None]


class DALAResNet50(ResNet):
    """ResNet-50 whose layer4 output passes through :class:`ChannelAttention` before pooling."""

    def __init__(
        self,
        num_classes: int,
        *,
        reduction: int = 16,
        negative_slope: float = 0.01,
        hidden: int = 512,
        dropout: float = 0.25,
    ) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])
        width = 512 * Bottleneck.expansion
        self.attention = ChannelAttention(width, reduction, negative_slope)
        self.fc = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.attention(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))
