"""Studies as library code: flag-free functions settings → configs → engine runs → payload → tables.

Each study module takes a frozen `Settings` dataclass, builds engine configs,
runs them through `stable_training.train.trainers.run` with the shared
`sweep.Sweep` runner (one workdir per run under a root the caller owns;
finished runs are read back, killed ones resume) and returns a JSON-able
payload plus a markdown table. `scripts/reproduce_*.py` are thin absl entry
points that parse flags into settings. No absl flag is defined or read here.

  sweep          the shared runner (`Sweep`) and row helpers
  claims         the reproduction ledger as data: every claim (paper, number, metric, rule, thresholds) and study
  verdicts       the claims' verdict rules: pure functions (payload, thresholds) → (ours, verdict)
  roaf_psmnist   the ROAF setting search on permuted sequential MNIST (5k subset) (Ceni 2022)
  roaf_memory    the ROAF RNN at long lags: first-input recall, adding problem, copy task (Ceni 2022)
  roaf_depth     ROAF MLP vs tanh MLP: Jacobian spread and gradient balance vs depth, training at depth (Ceni 2022)
  roaf_init      ROAF MLP at init: the QR (Lyapunov) scan of the input–output Jacobian to 50k layers (Ceni 2022)
  roaf_rnn_psmnist  ROAF RNN vs Elman/LSTM/GRU on permuted sequential Fashion-MNIST, β = 1 − α (Ceni 2022)
  roaf_rnn_memory   ROAF RNN vs Elman/LSTM/GRU on the adding problem and copy task at growing T, β = 1 − α
  glorot_table1  Glorot & Bengio (2010) Table 1 and the layer Jacobians at init (§4.2.3)
  avg_grad       averaged-gradient RMSProp vs RMSProp on a deep tanh MLP (ICLR 2025 submission)
  tgelu_classification  tGELU + output clipping: across-seed consistency (Ramaswamy et al. 2023)
  stability      the default experiment: a depth-20 MLP across inits, activations and methods (Glorot & Bengio 2010)
  lsc_ffn        LSC pre-training of deep MLPs vs Glorot / He init (Herranz-Celotti & Rouat 2023/24)
  lsc_rnn        LSC pre-training of deep RNNs (LSTM, GRU, ReLU-RNN, ALIF) (Herranz-Celotti & Rouat 2023/24)
  lsc_ffn_spectrum  what LSC changes in a deep MLP's layer-Jacobian spectra (a measurement, no training)
  dqn            DQN with and without a target network, tGELU + clipping (Ramaswamy et al. 2023)
"""
