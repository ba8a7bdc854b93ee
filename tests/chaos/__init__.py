"""Chaos tests: SIGKILL workers, supervisors and clients; the checker compares runs with storage."""
