"""Local Stability Condition (LSC) pre-training (Herranz-Celotti & Rouat 2023/24).

"Stabilizing RNN Gradients through Pre-training": move the radius of every
transition Jacobian (time ∂s_t/∂s_{t−1}, depth ∂s^l_t/∂s^{l−1}_t, read-out)
to a target (ρ = 1, ρ = 0.5, or the 'unbalanced' split) before training.

Any Flax linen model gets LSC:

    params, history = lsc.pretrain(model, params, x, 1.0)   # or "rho=0.5", "unbalanced", {kind: ρ}
    lsc.radii(model, params, x)                             # {kind: per-point radii}

A model that declares its transitions
(``model.lsc_transitions(params, x, key, time_samples=2) -> {kind: Transitions}``,
`protocol`; `supports(model)`) uses them: `DeepMLP`, `ROAFMLP`,
`RecurrentClassifier` and `DeepRNN` do (the fast path). For any other model
`find_transitions` finds them from the model itself (`generic`: stacks of
nn.Dense + elementwise activations, nn.RNN layers of LSTMCell / GRUCell /
SimpleCell / any flax cell, a Dense read-out), or a user passes
``transitions=fn`` (a step function, `UserTransitions`).

  radius / radius_of_map       exact and matrix-free Jacobian radii
  radii                        per-transition radii of any Flax model (compiled, NumPy out)
  transition_radii             the same, traceable (rnn_radii / ffn_radii: older names)
  find_transitions             the transitions of a Flax model found from its calls
  resolve_targets              a number / preset / mapping → {kind: ρ}
  layer_spectra                bulk vs top of each layer's Jacobian spectrum
  pretrain                     the LSC loop for any targets {kind: ρ}
  lsc_pretrain / lsc_pretrain_ffn / preset / preset_targets
  pretrain_from_config         the train engine's hook (config.lsc)
"""
from stable_training.lsc.generic import FoundTransitions, UserTransitions, find_transitions
from stable_training.lsc.pretrain import (METHODS, PRESETS, declared_kinds, ffn_layer_spectra, ffn_radii,
                                          layer_spectra, lsc_pretrain, lsc_pretrain_ffn, mean_radii, preset,
                                          preset_targets, pretrain, pretrain_from_config, radii,
                                          resolve_targets, rnn_radii, transition_radii)
from stable_training.lsc.protocol import Transitions, dense_readout, supports
from stable_training.lsc.spectral import KINDS, radius, radius_of_map, square_subsample

__all__ = ["KINDS", "METHODS", "PRESETS", "FoundTransitions", "Transitions", "UserTransitions", "declared_kinds",
           "dense_readout", "ffn_layer_spectra", "ffn_radii", "find_transitions", "layer_spectra", "lsc_pretrain",
           "lsc_pretrain_ffn", "mean_radii", "preset", "preset_targets", "pretrain", "pretrain_from_config",
           "radii", "radius", "radius_of_map", "resolve_targets", "rnn_radii", "square_subsample", "supports",
           "transition_radii"]
