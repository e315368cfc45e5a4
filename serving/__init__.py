"""Serving gateway. Never imports torch (tests/serving/test_no_torch.py enforces it)."""
