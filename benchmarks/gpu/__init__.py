"""Helpers of the prepared GPU check (benchmarks/gpu_check.py)."""
