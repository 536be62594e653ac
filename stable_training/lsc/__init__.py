"""Local Stability Condition (LSC) pre-training (Herranz-Celotti & Rouat 2023/24).

"Stabilizing RNN Gradients through Pre-training": move the radius of every
transition Jacobian (time ∂s_t/∂s_{t−1}, depth ∂s^l_t/∂s^{l−1}_t, read-out)
to a target (ρ = 1, ρ = 0.5, or the 'unbalanced' split) before training.

  radius / radius_of_map     exact and matrix-free Jacobian radii
  rnn_radii / ffn_radii      per-transition radii of DeepRNN / DeepMLP
  ffn_layer_spectra          bulk vs top of each DeepMLP layer-Jacobian spectrum
  lsc_pretrain / lsc_pretrain_ffn / preset
  pretrain_from_config       the train engine's hook (config.lsc)
"""
from stable_training.lsc.pretrain import (METHODS, PRESETS, ffn_layer_spectra, ffn_radii, lsc_pretrain, lsc_pretrain_ffn,
                                          mean_radii, preset, pretrain_from_config, rnn_radii)
from stable_training.lsc.spectral import KINDS, radius, radius_of_map, square_subsample

__all__ = ["KINDS", "METHODS", "PRESETS", "ffn_layer_spectra", "ffn_radii", "lsc_pretrain", "lsc_pretrain_ffn", "mean_radii",
           "preset", "pretrain_from_config", "radius", "radius_of_map", "rnn_radii", "square_subsample"]
