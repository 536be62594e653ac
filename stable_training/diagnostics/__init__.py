"""Per-layer training diagnostics (Glorot & Bengio 2010): Jacobian spectra, monitors, plots.

Any flax model: `compute_diagnostics` reads this project's taps, and for a
model without them (or directly, `generic_diagnostics`) intercepts the
model's layer calls (`stable_training.diagnostics.generic`).

See `stable_training.diagnostics.monitor` for how the train engine calls
`compute_diagnostics` and `DiagnosticsWriter`, and
``python -m stable_training.diagnostics.plot WORKDIR`` for the figures.
"""
from stable_training.diagnostics.generic import (LayerCall, find_layers, generic_diagnostics,
                                                 instrumented_apply, layer_names)
from stable_training.diagnostics.jacobian import (jacobian_mean_singular_value,
                                                  jacobian_singular_values,
                                                  layer_jacobian_singular_values)
from stable_training.diagnostics.monitor import (PERCENTILES, DiagnosticsWriter,
                                                 compute_diagnostics, histogram, layer_blocks,
                                                 load_diagnostics, saturation_fraction)

__all__ = ["PERCENTILES", "DiagnosticsWriter", "LayerCall", "compute_diagnostics", "find_layers",
           "generic_diagnostics", "histogram", "instrumented_apply", "layer_names",
           "jacobian_mean_singular_value", "jacobian_singular_values", "layer_blocks",
           "layer_jacobian_singular_values", "load_diagnostics", "saturation_fraction"]
