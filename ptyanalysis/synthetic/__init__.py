"""The synthetic study: simulation, networks, training, the iterative arms (rPIE, pty-chi) and the demo.

The analysis does not depend on it: only the entry points import it (the ``simulate``, ``train`` and ``demo``
commands, the benchmark, the GPU check), and the notebooks reach it through
:func:`ptyanalysis.pipeline.notebook.ensure_synthetic_study`, which imports it only when their
``ensure_synthetic`` parameter names a study size.

Submodules and public names are loaded lazily (``lazy_loader``), as in scikit-image.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=['demo', 'networks', 'ptychi', 'rpie', 'simulate', 'training'],
    submod_attrs={
        'demo': ['ensure_study', 'grid_spec', 'run_comparison_grid', 'incident_dose', 'diagnosis_parameters', 'run_demo', 'quality_table'],
        'networks': ['canvas_pad', 'CombineComplex', 'StackMembers', 'MergePatches', 'ExtractMembers', 'FarFieldAmplitude', 'poisson_nll', 'build_patch_network', 'build_models'],
        'ptychi': ['ptychi_available', 'ptychi_version', 'require_ptychi', 'ptychi_frame', 'run_ptychi', 'ptychi_model_amplitudes'],
        'rpie': ['RPIEConfig', 'Reconstruction', 'frame_for', 'rpie'],
        'simulate': ['StudySize', 'SimulationConfig', 'make_probe', 'probe_radius', 'make_object', 'make_positions', 'split_positions', 'view_indices', 'disc_overlap', 'overlap_metrics', 'exit_waves_to_far_field', 'extract_patches', 'simulate_counts', 'simulate_study', 'plot_study', 'simulation_config'],
        'training': ['TrainConfig', 'TrainedModel', 'input_statistics', 'train_baseline', 'train_pinn', 'save_trained', 'run_iterative', 'save_reconstruction', 'train_study', 'TRAIN_CONFIGS', 'config_with', 'hub_budget'],
    },
)
