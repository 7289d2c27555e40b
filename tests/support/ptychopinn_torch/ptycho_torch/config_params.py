"""The four config dataclasses, with the fields PtychoPINN's metadata holds that the tests use."""

from dataclasses import dataclass


@dataclass
class DataConfig:
    nphotons: float = 1e5
    scale_contract_version: str = "ci_intensity_v2"
    measurement_domain: str = "count_intensity"
    N: int = 64
    C: int = 4
    K: int = 6
    grid_size: tuple = (2, 2)
    normalize: str = "Batch"
    probe_scale: float = 4.0


@dataclass
class ModelConfig:
    intensity_scale_trainable: bool = False
    intensity_scale: float = 10000.0
    n_filters_scale: int = 2
    # stand-in only: the amplitude ignores the input (a collapsed model, as PtychoPINN's 5-epoch gs1 run)
    flat_amplitude: bool = False
    # stand-in only: the model uses the positions it is given (PtychoPINN's forward_predict ignores them)
    use_positions: bool = False


@dataclass
class TrainingConfig:
    nll_weight: float = 1.0
    epochs: int = 5


@dataclass
class InferenceConfig:
    batch_size: int = 16
