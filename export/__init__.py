"""Export: checkpoints -> ONNX -> model_repository/ and artifacts/ (FAISS index, feature tables, manifest)."""
