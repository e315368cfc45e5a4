"""Metric functions, pure numpy, grouped by problem type."""
