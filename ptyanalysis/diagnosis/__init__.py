"""Diagnosis engines: output health, input sets, the split comparison and the zero-prediction bisection.

Submodules and public names are loaded lazily (``lazy_loader``), as in scikit-image.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=['bisection', 'drift', 'health', 'inputs', 'splits', 'yardstick'],
    submod_attrs={
        'bisection': ['Experiment', 'Cause', 'BisectionResult', 'intervene', 'ddmin', 'layer_probe', 'bisect', 'write_bisection', 'plot_bisection'],
        'health': ['OutputHealth', 'output_stats', 'outputs_stats', 'sample_health', 'health_score', 'health_scores', 'paired_health_scores', 'reference_problem', 'restores', 'Criterion', 'parse_criterion', 'degraded'],
        'inputs': ['feed_split', 'normalise_input_set', 'reference_from_sidecar', 'load_input_sets', 'cli_input_sets', 'paired_trained_set', 'split_ground_truth'],
        'drift': ['summary_stats', 'drift_measures', 'input_drift', 'is_image_like', 'is_positions_like', 'pattern_summary', 'positions_values'],
        'yardstick': ['Candidate', 'Yardstick', 'choose_yardstick'],
        'splits': ['SplitComparison', 'compare_splits', 'write_split_comparison', 'plot_split_comparison'],
    },
)
