"""A small network with PtychoPINN_Lightning's constructor and forward_predict (tests only)."""

import lightning as L
import torch
from torch import nn


class PtychoPINN_Lightning(L.LightningModule):  # noqa: N801 - PtychoPINN's name
    def __init__(self, model_config, data_config, training_config, inference_config):
        super().__init__()
        self.model_config, self.data_config = model_config, data_config
        self.training_config, self.inference_config = training_config, inference_config
        C = int(data_config.C)
        self.encoder = nn.Conv2d(C, 4, 3, padding=1)
        self.amp = nn.Conv2d(4, C, 3, padding=1)
        self.phase = nn.Conv2d(4, C, 3, padding=1)
        self.amp_bias = nn.Parameter(torch.rand(1, C, data_config.N, data_config.N))
        self.register_buffer("_ci_rms_input_scale", torch.zeros(0))

    def register_ci_statistics(self, statistics):
        self._ci_rms_input_scale = torch.as_tensor(statistics["rms_input_scale"], dtype=torch.float32)

    def forward_predict(self, x, positions, probe, input_scale_factor):
        x = x * input_scale_factor
        if self.model_config.use_positions:
            x = x + positions.reshape(x.shape[0], x.shape[1], 2).sum(-1)[..., None, None]
        h = torch.tanh(self.encoder(x))
        if self.model_config.flat_amplitude:
            amp = torch.sigmoid(self.amp_bias).expand(x.shape[0], -1, -1, -1)
        else:
            amp = torch.sigmoid(self.amp(h) + self.amp_bias)
        phase = torch.pi * torch.tanh(self.phase(h))
        return torch.polar(amp, phase)
