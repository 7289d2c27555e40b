"""The fault suite's case names, importable without Keras.

Tests parametrize over these at collection time, which the fast tier does with the frameworks blocked; the
builders themselves (Keras models) live in faults.py, faults_conventions.py and faults_more.py, whose
``*_CASES`` tuples are built from these names, and reach the tests through the ``faults*`` fixtures
(tests/diagnosis/conftest.py: tier tf).
"""

ALL_CASES = ("shift_one_input", "wrong_units", "poisoned_sample", "batch_size_dependent", "dtype_dependent",
             "dead_model", "flat_model", "healthy", "incident",
             "degrees_not_radians", "nan_positions", "float16_overflow_export", "inf_frames_in_6000",
             "dead_amplitude_output", "unusable_reference", "constant_offsets", "bright_frame_spoils_batch",
             "two_fault_incident", "batch_centred_positions", "swapped_position_axes", "missing_channel",
             "paired_two_fault_incident")

CONVENTION_CASES = ("fftshifted_patterns", "transposed_detector", "flipped_rows", "flipped_cols",
                    "intensities_for_amplitudes", "hot_pixel", "wrapped_int16_counts", "eight_bit_export",
                    "positions_in_metres", "negated_positions", "swapped_xy_positions", "conjugated_probe")

MORE_CASES = ("dark_frames", "frame_zero_reader", "support_zero_by_design", "pulse_energy_lag", "nan_weights")
