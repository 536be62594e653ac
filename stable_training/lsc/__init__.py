"""Local Stability Condition (LSC) pre-training (Herranz-Celotti & Rouat 2023/24).

"Stabilizing RNN Gradients through Pre-training": move the radius of every
transition Jacobian (time ∂s_t/∂s_{t−1}, depth ∂s^l_t/∂s^{l−1}_t, read-out)
to a target (ρ = 1, ρ = 0.5, or the 'unbalanced' split) before training.

A model gets LSC by declaring its transitions:
``model.lsc_transitions(params, x, key, time_samples=2) -> {kind: Transitions}``
(`protocol`); `supports(model)` tells whether it does. `DeepMLP`, `ROAFMLP`,
`RecurrentClassifier` and `DeepRNN` (every cell of `models.recurrent.CELLS`) do.

  radius / radius_of_map       exact and matrix-free Jacobian radii
  transition_radii             per-transition radii of any supporting model
                               (rnn_radii / ffn_radii: the same, older names)
  layer_spectra                bulk vs top of each layer's Jacobian spectrum
  pretrain                     the LSC loop for any targets {kind: ρ}
  lsc_pretrain / lsc_pretrain_ffn / preset / preset_targets
  pretrain_from_config         the train engine's hook (config.lsc)
"""
from stable_training.lsc.pretrain import (METHODS, PRESETS, declared_kinds, ffn_layer_spectra, ffn_radii,
                                          layer_spectra, lsc_pretrain, lsc_pretrain_ffn, mean_radii, preset,
                                          preset_targets, pretrain, pretrain_from_config, rnn_radii,
                                          transition_radii)
from stable_training.lsc.protocol import Transitions, dense_readout, supports
from stable_training.lsc.spectral import KINDS, radius, radius_of_map, square_subsample

__all__ = ["KINDS", "METHODS", "PRESETS", "Transitions", "declared_kinds", "dense_readout", "ffn_layer_spectra",
           "ffn_radii", "layer_spectra", "lsc_pretrain", "lsc_pretrain_ffn", "mean_radii", "preset",
           "preset_targets", "pretrain", "pretrain_from_config", "radius", "radius_of_map", "rnn_radii",
           "square_subsample", "supports", "transition_radii"]
