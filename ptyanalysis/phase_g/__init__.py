"""Phase G: collecting per-job results, the study's artifacts, figures, the HTML report and verification.

Submodules and public names are loaded lazily (``lazy_loader``), as in scikit-image.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=['collect', 'figures', 'html', 'inventory', 'ptychopinn_study', 'report', 'results', 'schema', 'story', 'summary', 'trust', 'verify'],
    submod_attrs={
        'collect': ['JobRecord', 'PhaseGResult', 'ReconstructionFile', 'read_comparison_metrics', 'read_frc_curves', 'read_reconstruction_file', 'read_reconstructions', 'read_manifest', 'collect_jobs'],
        'figures': ['save_figure', 'scored_images', 'frc_rings', 'cell_statuses', 'plot_metric_grid', 'plot_reconstructions', 'plot_frc_curves', 'plot_metrics_vs_dose', 'expected_figures', 'write_figures'],
        'html': ['execute_report_notebook', 'render_html', 'default_notebook', 'report_exporter'],
        'inventory': ['list_hub_files', 'write_artifact_inventory'],
        'ptychopinn_study': ['METRIC_MAP', 'MODEL_ARMS', 'StudyModel', 'PtychoPINNStudy', 'StudyImport', 'is_study_dir', 'find_studies', 'read_study', 'read_studies', 'write_study_job', 'import_studies'],
        'report': ['phase_g'],
        'results': ['results_dataset', 'save_dataset', 'load_results'],
        'schema': [],
        'story': ['Story', 'build_story', 'job_arms', 'arm_status_text', 'arm_label', 'zero_text', 'read_diagnosis', 'best_arms', 'dose_trends', 'problems'],
        'summary': ['phase_c_metadata_compliance', 'summarize_jobs', 'compute_deltas', 'delta_summary', 'format_delta', 'delta_highlight_lines', 'delta_preview_lines', 'ssim_grid_markdown', 'metrics_summary_markdown', 'aggregate_report_markdown', 'aggregate_highlights_text', 'metrics_digest_markdown'],
        'trust': ['MOSTLY_ZERO_FRACTION', 'SCAN_COVERAGE_MIN', 'TrustFlag', 'JobTrust', 'scan_positions', 'log_patch_counts', 'check_reconstructions', 'training_trust', 'job_trust', 'trust_flags', 'trust_of', 'flag_lines'],
        'verify': ['VerifyResult', 'check_manifest', 'check_metrics_summary_json', 'check_metrics_summary_md', 'check_aggregate_highlights', 'check_metrics_digest', 'check_delta_summary', 'check_delta_highlights', 'check_ssim_grid', 'check_orchestrator_logs', 'check_inventory', 'check_numbers', 'check_figures', 'check_job_files', 'check_trust', 'verify_hub'],
    },
)
