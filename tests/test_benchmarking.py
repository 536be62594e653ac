"""stable_training.benchmarking: interleaved rounds and per-round ratios (no timing assertions)."""
import pytest

from stable_training import benchmarking


def test_interleaved_runs_each_callable_once_per_round_reversing_the_order_every_other_round():
  calls = []
  ts = benchmarking.interleaved({k: (lambda k=k: calls.append(k)) for k in "abc"}, 3)
  assert calls == list("abc" "cba" "abc") and [len(v) for v in ts.values()] == [3, 3, 3]
  assert all(t >= 0 for v in ts.values() for t in v)
  with pytest.raises(ValueError, match="reps=0"):
    benchmarking.interleaved({"a": lambda: None}, 0)


def test_ratio_is_the_median_of_per_round_ratios():
  # rounds: 4/2 = 2, 9/3 = 3, 10/1 = 10 → median 3; a ratio of medians would say 9/2 = 4.5
  r = benchmarking.ratio([4.0, 9.0, 10.0], [2.0, 3.0, 1.0])
  assert r == {"median": 3.0, "min": 2.0, "max": 10.0, "rounds": 3}
  assert benchmarking.fmt_ratio(r) == "3.00× [2.00–10.00]"
  with pytest.raises(ValueError, match="2 and 1"):
    benchmarking.ratio([1.0, 2.0], [1.0])


def test_cpu_model_names_the_processor():
  name = benchmarking.cpu_model()
  assert isinstance(name, str) and name.strip()


def test_jax_flushes_float32_subnormals_on_the_cpu():
  # XLA:CPU: 1e-39 · 1.5 (a subnormal operand and result) comes back 0, not 1.5e-39; the header says so.
  assert benchmarking.jax_flushes_subnormals()
  assert "float32 subnormals flushed" in benchmarking.header()


def test_torch_subnormal_mode_is_checked_before_torch_is_imported():
  with pytest.raises(ValueError, match=r"'none'.*valid are flush, keep"):
    benchmarking.set_torch_subnormals("none")


def test_torch_subnormal_modes_change_its_arithmetic():
  torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install -e '.[bench]')")
  x = torch.tensor([1e-39], dtype=torch.float32)
  try:
    benchmarking.set_torch_subnormals("flush")
    assert float((x * 1.5)[0]) == 0.0                      # as XLA:CPU computes it
    assert "float32 subnormals flushed" in benchmarking.header(1, "flush").split("PyTorch")[1]
    benchmarking.set_torch_subnormals("keep")
    assert float((x * 1.5)[0]) == pytest.approx(1.5e-39, rel=1e-6)   # IEEE gradual underflow
    assert "float32 subnormals kept" in benchmarking.header(1, None).split("PyTorch")[1]
  finally:
    torch.set_flush_denormal(False)
