"""The study pipeline: one comparison job, the grid over dose x view x split, and the one papermill runner.

Submodules and public names are loaded lazily (``lazy_loader``), as in scikit-image.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=['compare', 'grid', 'notebook'],
    submod_attrs={
        'compare': ['CompareConfig', 'ArmResult', 'network_inputs', 'run_network_arm', 'load_iterative_arm', 'covered_box', 'write_metrics_csv', 'write_frc_csv', 'plot_comparison', 'compare_job'],
        'grid': ['GridSpec', 'GridCell', 'RunSettings', 'CellResult', 'GridResult', 'spec_from_dict', 'load_spec', 'notebook_parameters', 'validate_parameters', 'expand', 'cell_status', 'run_cell', 'default_workers', 'run_grid', 'bench_grid'],
        'notebook': ['scoped_env', 'declared_parameters', 'check_parameters', 'literal_kind', 'default_kind', 'kind_mismatch', 'inspect_parameters', 'notebook_parameters', 'validate_parameters', 'load_params', 'execute'],
    },
)
