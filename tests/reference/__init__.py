"""Reference implementations in PyTorch used by tests and benchmarks to check the JAX code."""
