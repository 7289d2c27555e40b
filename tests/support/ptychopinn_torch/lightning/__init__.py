"""Stand-in for Lightning (tests only): ``LightningModule`` is a plain ``torch.nn.Module``."""

import torch

LightningModule = torch.nn.Module
