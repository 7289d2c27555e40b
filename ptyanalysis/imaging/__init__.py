"""Imaging core (numpy / scikit-image, no TensorFlow): stitching patches onto a canvas, alignment and registration, image-quality metrics, the placement audit of patches without ground truth.

Submodules and public names are loaded lazily (``lazy_loader``), as in scikit-image.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=['align', 'metrics', 'placement', 'stitching'],
    submod_attrs={
        'align': ['Registration', 'register', 'apply_shift', 'crop_border', 'fit_phase_plane', 'remove_phase_plane', 'remove_phase_offset', 'normalize_amplitude_mean', 'crop_to_scan'],
        'metrics': ['mae', 'mse', 'psnr', 'ssim', 'ms_ssim', 'FRCResult', 'half_bit_threshold', 'frc', 'ptychopinn_ms_ssim', 'ptychopinn_ms_ssim_levels', 'NEGATIVE_SSIM_CLAMP', 'ptychopinn_frc', 'ptychopinn_frc_rings', 'ptychopinn_frc_cutoff', 'score'],
        'placement': ['Placement', 'PLACEMENTS', 'PlacementAudit', 'placement', 'equivalent', 'overlap_pairs', 'pair_agreement', 'placement_audit', 'placement_text'],
        'stitching': ['StitchResult', 'scan_frame', 'Stitcher', 'stitch', 'extract', 'ptychopinn_frame', 'ptychopinn_reassemble', 'ArrayBackend', 'gpu_backend'],
    },
)
