"""Write a PtychoPINN PyTorch ``wts.h5.zip`` with the real layout (docs/formats.md#pytorch-bundles), tests only."""

import io
import pickle
import zipfile
from dataclasses import asdict


def write_torch_bundle(path, *, gridsize=1, N=32, seed=0, flat_amplitude=False, use_positions=False,
                       intensity_scale=3.125, metadata=True, break_weights=False):
    import torch
    from ptycho_torch.config_params import DataConfig, InferenceConfig, ModelConfig, TrainingConfig
    from ptycho_torch.model import PtychoPINN_Lightning

    torch.manual_seed(seed)
    C = gridsize * gridsize
    dc = DataConfig(nphotons=1e4, N=N, C=C, grid_size=(gridsize, gridsize))
    mc = ModelConfig(intensity_scale_trainable=True, intensity_scale=intensity_scale,
                     flat_amplitude=flat_amplitude, use_positions=use_positions)
    tc, ic = TrainingConfig(), InferenceConfig()
    model = PtychoPINN_Lightning(mc, dc, tc, ic)
    state = model.state_dict()
    if break_weights:
        state = {k: (v[..., :-1] if k == "amp.weight" else v) for k, v in state.items()}

    def blob(obj, torch_save=False):
        buf = io.BytesIO()
        if torch_save:
            torch.save(obj, buf)
        else:
            buf.write(pickle.dumps(obj))
        return buf.getvalue()

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.dill", blob({"models": ["diffraction_to_obj", "autoencoder"], "version": "2.0-pytorch"}))
        zf.writestr("diffraction_to_obj/model.pth", blob(state, True))
        zf.writestr("diffraction_to_obj/params.dill", blob({"intensity_scale": intensity_scale,
                                                            "intensity_scale.trainable": True, "backend": "pytorch",
                                                            "N": N, "gridsize": gridsize, "_version": "2.0-pytorch"}))
        zf.writestr("autoencoder/model.pth", blob({"_sentinel": "autoencoder"}, True))
        zf.writestr("autoencoder/params.dill", blob({"backend": "pytorch"}))
        if metadata:
            zf.writestr("torch_scaling_metadata.pt", blob({
                "schema_version": "ci-entrypoints-v1", "data_config": asdict(dc), "model_config": asdict(mc),
                "training_config": asdict(tc), "inference_config": asdict(ic),
                "ci_statistics": {"rms_input_scale": [1.0], "mean_measured_intensity": [1.0]}}, True))
    return path
