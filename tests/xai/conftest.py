"""Tiny models and inputs for the xai tests (random init, seeded; CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """A small CNN with ResNet-like layer names, in-place ReLUs, BatchNorm and Dropout."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True))
        self.layer3 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16),
                                    nn.ReLU(inplace=True))
        self.layer4 = nn.Sequential(nn.Conv2d(16, 24, 3, stride=2, padding=1),
                                    nn.ReLU(inplace=True))
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.stem(x)))
        return self.fc(self.drop(x.mean(dim=(2, 3))))


STAGES = {"stage3": "layer3", "stage4": "layer4"}


def make_tiny(num_classes: int = 3, seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet(num_classes)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def tiny() -> TinyNet:
    return make_tiny()


@pytest.fixture
def images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, 32, 32, generator=gen)
