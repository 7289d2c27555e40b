"""The study pipeline: one comparison job, the grid over dose x view x split, and the one papermill runner.

Submodules and public names are loaded lazily (``lazy_loader``), as in scikit-image.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=['compare', 'grid', 'kernels', 'kernelspec', 'modelcache', 'notebook'],
    submod_attrs={
        'compare': ['CompareConfig', 'ArmResult', 'feed_mode', 'network_plan', 'network_inputs', 'run_network_arm', 'load_iterative_arm', 'covered_box', 'write_metrics_csv', 'write_frc_csv', 'plot_comparison', 'compare_job'],
        'grid': ['GridSpec', 'GridCell', 'RunSettings', 'CellResult', 'GridResult', 'spec_from_dict', 'load_spec', 'validate_grid_parameters', 'expand', 'cell_status', 'run_cell', 'default_workers', 'run_grid', 'bench_grid', 'cell_attempts', 'MemoryPlan', 'machine_memory', 'files_estimate', 'plan_memory', 'assign_workers', 'cell_costs', 'CellCosts', 'JobProfile', 'merge_manifest', 'check_hub'],
        'kernels': ['KernelPool', 'KernelPoolPlugin', 'PeakMemory', 'rss_bytes', 'register_engine'],
        'kernelspec': ['KERNEL_NAME', 'install_kernel_spec'],
        'modelcache': ['ModelCache', 'CacheStats', 'fingerprint', 'shared_model_cache'],
        'notebook': ['TEMPLATE_PACKAGE', 'NOTEBOOK_DIR_ENV', 'KERNEL_ENV', 'KERNEL_ARGUMENTS', 'kernel_arguments', 'kernel_env', 'scoped_env', 'template_names', 'template_path', 'notebook_source', 'read_notebook', 'as_ipynb', 'parameters_cell_index', 'Parameter', 'parse_parameters', 'declared_parameters', 'check_value', 'validate_parameters', 'notebook_dir', 'CheckedParameters', 'check_parameters', 'given_parameters', 'ensure_synthetic_study', 'DiagnosisInputs', 'diagnosis_inputs', 'load_params', 'failed_path', 'execute'],
    },
)
