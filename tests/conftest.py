"""Suite-wide settings of the test worker processes (none of them changes a number)."""
import gc

# Tracing and lowering allocate millions of short-lived objects, and at the default gen-0 threshold
# (700) Python's cyclic collector ran ~2,200 times over tests/test_lsc.py, re-walking every object
# the imports made (jax, flax, optax) at each full pass: 2.8-2.9 s of its 73-80 s. With a larger gen-0
# threshold, and the imported objects frozen out of the collector's view once the tests are
# collected, it ran 89 times for 0.9 s (file wall 70.5 / 69.6 s against 73.2 / 80.3 s, alternating).
gc.set_threshold(10_000, 20, 20)


def pytest_collection_finish(session):
  del session
  gc.freeze()
