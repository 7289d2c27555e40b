"""Running models: loading every model kind, runtime controls, input sources, feeds (how a split is fed), streaming inference and output statistics.

Submodules and public names are loaded lazily (``lazy_loader``), as in scikit-image.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=['feeds', 'loading', 'model', 'runtime', 'sources', 'stats', 'streaming'],
    submod_attrs={
        'feeds': ['mean_total_intensity', 'scale_diffraction', 'intensity_scale_for', 'group_members', 'group_inputs', 'study_model_inputs'],
        'loading': ['load_model', 'bundle_members'],
        'model': ['LoadedModel', 'describe_model'],
        'runtime': ['RuntimeConfig'],
        'sources': ['open_npz'],
        'stats': ['OutputStats'],
        'streaming': ['OOMEvent', 'InferenceResult', 'run_inference', 'predict'],
    },
)
