"""Running models: loading every model kind, runtime controls, input sources, feeds (how a split is fed), streaming inference and output statistics.

Submodules and public names are loaded lazily (``lazy_loader``), as in scikit-image.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=['backends', 'feeds', 'loading', 'model', 'runtime', 'sources', 'stats', 'streaming', 'torch_bundle'],
    submod_attrs={
        'feeds': ['FEEDS', 'mean_total_intensity', 'normalise_diffraction', 'scale_diffraction', 'intensity_scale_for', 'group_members', 'group_inputs', 'trained_input_scale', 'study_model_inputs', 'feed_gridsize', 'split_inputs'],
        'loading': ['load_model', 'bundle_members', 'bundle_params'],
        'model': ['LoadedModel', 'describe_model'],
        'backends': ['KERAS_BACKENDS', 'BackendChoice', 'select_keras_backend', 'keras_backend', 'parse_device', 'executor_for', 'require_tensorflow'],
        'runtime': ['RuntimeConfig', 'DEFAULT_BATCH_SIZE', 'BATCH_VALUES', 'CPU_BATCH_VALUES', 'auto_batch_size',
                    'batch_values'],
        'sources': ['open_npz'],
        'torch_bundle': ['bundle_format', 'is_torch_bundle', 'load_torch_bundle'],
        'stats': ['OutputStats', 'count_values'],
        'streaming': ['OOMEvent', 'RowsEvent', 'InferenceResult', 'run_inference', 'predict', 'known_batch_size_limit', 'clear_inference_caches'],
    },
)
