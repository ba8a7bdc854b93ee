"""Job modules: the examples a new user runs, and the jobs tests and benchmarks use."""
