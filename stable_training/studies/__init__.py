"""Studies as library code: flag-free functions settings → configs → engine runs → payload → tables.

Each study module takes a frozen `Settings` dataclass, builds engine configs,
runs them through `stable_training.train.trainers.run` with the shared
`sweep.Sweep` runner (one workdir per run under a root the caller owns;
finished runs are read back, killed ones resume) and returns a JSON-able
payload plus a markdown table. `scripts/reproduce_*.py` are thin absl entry
points that parse flags into settings. No absl flag is defined or read here.

  sweep          the shared runner (`Sweep`) and row helpers
  roaf_psmnist   the ROAF setting search on permuted sequential MNIST (5k subset) (Ceni 2022)
  roaf_memory    the ROAF RNN at long lags: first-input recall, adding problem, copy task (Ceni 2022)
"""
