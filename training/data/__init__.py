"""Data: seeded generators with known ground truth, loaders for the shop's own files, splits.

Every source (generator or loader) produces the same in-memory forms from `training.data.schema`.
"""
