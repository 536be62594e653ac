"""The stability check-up (stable_training.checkup): verdicts, measured remedies, report, CLI."""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stable_training import checkup as ck
from stable_training import initializers as inits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TanhMLP(nn.Module):
  """A user's plain flax model (nn.Dense + jnp.tanh, no taps), Glorot & Bengio's init choice."""
  depth: int
  width: int = 16
  kernel_init: str = "glorot_standard"

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = jnp.tanh(nn.Dense(self.width, kernel_init=inits.get_initializer(self.kernel_init))(x))
    return nn.Dense(4, kernel_init=inits.get_initializer(self.kernel_init))(x)


def _batch():
  x = jax.random.normal(jax.random.PRNGKey(1), (16, 8))
  return x, jnp.arange(16) % 4


def test_deep_standard_tanh_is_vanishing_and_the_first_remedy_fixes_it(tmp_path):
  model, (x, y) = TanhMLP(depth=15), _batch()   # 15 layers: vanishing already (×0.57 per layer), half the compile
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  chosen = tuple(n for n in ck.REMEDIES if n != "lsc_rho0.5")   # (ρ = 0.5: the same code path, saves time)
  r = ck.checkup(model, params, (x, y), remedies=chosen, lsc_steps=10)
  base = r["measure"]
  assert r["verdict"] == "vanishing" and r["verdict_line"].startswith("verdict: vanishing")
  assert base["grad_log_ratio"] < -np.log(1e3)             # ‖∂L/∂h_1‖/‖∂L/∂h_15‖ < 1e-3
  assert np.mean(base["jac_logsv_mean"]) < -0.5            # layer Jacobians contract (mean σ ≈ 0.5)
  assert len(base["state_grad_norm"]) == 15 and len(base["jac_sv_mean"]) == 14
  assert base["lsc_radii"] is not None or base["lsc_radii_error"]
  names = {e["name"] for e in r["remedies"]}
  assert names == set(chosen)                               # each measured or listed with its reason
  skipped = {e["name"]: e["skipped"] for e in r["remedies"] if "skipped" in e}
  assert "tgelu_clip" in skipped and "activation" in skipped["tgelu_clip"]
  best = r["remedies"][0]
  assert best["rank"] == 1 and best["name"] == r["best"]
  assert best["verdict"] == "healthy" and best["score"] < 0.2 * base["score"]
  assert abs(best["measure"]["grad_log_ratio"]) < np.log(10)
  scores = [e["score"] for e in r["remedies"] if "rank" in e]
  assert scores == sorted(scores)
  # applying the ranked remedy gives the improvement the report promised (re-measured)
  again = ck.measure(best["model"], best["params"], x, y, radii=False)
  np.testing.assert_allclose(again["score"], best["score"], rtol=1e-4)
  assert again["verdict"] == "healthy"
  assert base["score"] - again["score"] == pytest.approx(best["improvement"], rel=1e-4)
  # report, figure, JSON
  md = ck.report_markdown(r)
  assert "verdict: vanishing" in md and f"| 1 | {best['name']} |" in md
  paths = ck.write_outputs(r, str(tmp_path))
  assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  js = json.load(open(paths["json"]))
  assert js["verdict"] == "vanishing" and js["remedies"][0]["name"] == best["name"]
  assert "params" not in js["remedies"][0]


def test_normalized_shallow_tanh_is_healthy():
  model, (x, y) = TanhMLP(depth=5, kernel_init="glorot_normalized"), _batch()
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  r = ck.checkup(model, params, (x, y), remedies=())
  assert r["verdict"] == "healthy" and r["remedies"] == [] and r["best"] is None
  assert abs(r["measure"]["grad_log_ratio"]) < np.log(10)


def test_package_callable_and_no_flags_at_import():
  import stable_training as st
  assert callable(st.checkup) and st.checkup.checkup is ck.checkup
  # In a fresh interpreter (test processes share absl's FLAGS): the CLI defines its flags in main() only.
  code = ("from absl import flags; import stable_training.checkup; "
          "print(sorted({'out', 'lsc_steps', 'remedies', 'config'} & set(flags.FLAGS)))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_cli_on_a_tiny_config(tmp_path):
  out = tmp_path / "ck"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "stable_training.checkup", "--config=experiments/configs/default.py:tiny",
       f"--out={out}", "--batch=16", "--lsc_steps=3", "--remedies=roaf,tgelu_clip"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "verdict:" in proc.stdout
  js = json.load(open(out / "checkup.json"))
  assert js["model"] == "DeepMLP" and js["measure"]["backend"] == "transitions"
  assert js["verdict"] in ("vanishing", "exploding", "healthy")
  assert {e["name"] for e in js["remedies"]} == {"roaf", "tgelu_clip"}
  assert all("rank" in e for e in js["remedies"])            # DeepMLP exposes width/depth/activation
  assert os.path.getsize(out / "checkup.png") > 1000 and (out / "report.md").read_text().startswith("# Stability")
