"""The naive peer: what a team writes first, served on the gateway's HTTP API so the same load test drives it.

FastAPI + the PyTorch models in eager mode, rebuilt from artifacts/checkpoints (training.models and
training.checkpoint), brute-force numpy retrieval over item vectors computed at start-up by the eager
item tower, one request at a time (async handlers that run the models inline: no thread pool, no
batching). The business rules are not re-invented: intent calibration and hand-off follow
artifacts/intent/intent.json, the forecast reads its features through the shared feature definition
(serving/forecast/source.py, also what training uses) and plans with serving/forecast/replenishment.py.
The only place in bench/ that imports torch.
"""
