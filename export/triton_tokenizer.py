"""Triton Python-backend model: raw text -> WordPiece ids for the intent BERT (the ensemble's first step).

Copied by `python -m export` to model_repository/intent_tokenizer/<version>/model.py, next to the
tokenizer.json the intent model was trained with (the same file training and the gateway read, so ids
are identical). Runs inside Triton's Python backend, which provides `triton_python_backend_utils`.

In:  text            TYPE_STRING [batch, 1]  (UTF-8)
Out: input_ids       TYPE_INT64  [batch, T]  right-padded with 0, T = longest row of the request
     attention_mask  TYPE_INT64  [batch, T]
Each request is padded to its own longest row only; rows are truncated to the config's max_len tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend at run time
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        max_len = int(config["parameters"]["max_len"]["string_value"])
        path = Path(args["model_repository"]) / str(args["model_version"]) / "tokenizer.json"
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest row of each call

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
            texts = [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t) for t in raw]
            encoded = self.tokenizer.encode_batch(texts)
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("input_ids", ids), pb_utils.Tensor("attention_mask", mask)]
                )
            )
        return responses

    def finalize(self) -> None:
        self.tokenizer = None
