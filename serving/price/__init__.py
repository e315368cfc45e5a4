"""Dynamic pricing per (store, item) from the demand forecaster: see pipeline.py."""
