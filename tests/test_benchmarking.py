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
