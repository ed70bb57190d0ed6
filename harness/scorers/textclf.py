"""A small offline text classifier: TF-IDF over words and characters, plus optional dense
features (sentence embeddings and a few numbers), into one class-balanced multinomial logistic
regression (scikit-learn). Used by the answer-outcome scorer (refusal / compliance / nonsense)
and the runtime input guard.

Training embeds every labelled row (tens of seconds), so the trained model is shipped as a
`.npz` file beside its training data and loaded in milliseconds; `python -m harness
train-classifiers` retrains it, and tests/test_classifiers.py checks that the shipped file is
what its training data gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# The two TF-IDF views every model has: words (n-gram range per model) and characters 3-5
# within word boundaries (robust to typos, leetspeak, inflection), both sublinear.
CHAR_PARAMS = {"analyzer": "char_wb", "ngram_range": (3, 5), "lowercase": True}


def _vectorizer(params: dict[str, Any]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer=params["analyzer"], ngram_range=tuple(params["ngram_range"]),
                           lowercase=params["lowercase"], sublinear_tf=True)


class LinearTextModel:
    """The trained model, scored directly: each vectorizer's analyzer, sublinear tf times idf,
    L2 norm per vectorizer, dot products with the coefficients (plus the dense features'),
    softmax. Same numbers as scikit-learn's predict_proba, without its per-call input
    validation (~0.5 ms per text instead of ~6 ms)."""

    def __init__(self, classes: Sequence[str], intercept: np.ndarray,
                 parts: list[tuple[dict[str, Any], list[str], np.ndarray, np.ndarray]],
                 dense_weights: np.ndarray | None):
        self.classes = [str(c) for c in classes]
        self.intercept = np.asarray(intercept, dtype=float)
        self.dense_weights = dense_weights
        self.parts = []
        self._raw_parts = parts
        for params, terms, idf, weights in parts:
            analyze = _vectorizer(params).build_analyzer()
            self.parts.append((analyze, {t: i for i, t in enumerate(terms)}, idf, weights * idf[:, None]))

    def predict_proba(self, text: str, dense: np.ndarray | None = None) -> np.ndarray:
        scores = self.intercept.copy()
        for analyze, vocabulary, idf, weights in self.parts:
            counts: dict[int, int] = {}
            for gram in analyze(text):
                column = vocabulary.get(gram)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            if not counts:
                continue
            columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=float, count=len(counts)))  # sublinear_tf
            norm = float(np.sqrt(np.sum((tf * idf[columns]) ** 2)))
            scores += (tf @ weights[columns]) / norm
        if self.dense_weights is not None:
            scores += np.asarray(dense, dtype=float) @ self.dense_weights
        scores = np.exp(scores - scores.max())
        return scores / scores.sum()

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"classes": np.array(self.classes), "intercept": self.intercept}
        meta = []
        for i, (params, terms, idf, weights) in enumerate(self._raw_parts):
            meta.append({k: list(v) if isinstance(v, tuple) else v for k, v in params.items()})
            arrays[f"terms{i}"] = np.array(terms)
            arrays[f"idf{i}"] = idf.astype(np.float32)
            arrays[f"weights{i}"] = weights.astype(np.float32)
        if self.dense_weights is not None:
            arrays["dense_weights"] = self.dense_weights.astype(np.float32)
        arrays["meta"] = np.array(json.dumps(meta))
        with open(path, "wb") as fh:  # np.savez_compressed(path) would append ".npz"
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> "LinearTextModel":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            parts = [(params, [str(t) for t in data[f"terms{i}"]], data[f"idf{i}"].astype(float),
                      data[f"weights{i}"].astype(float)) for i, params in enumerate(meta)]
            dense = data["dense_weights"].astype(float) if "dense_weights" in data else None
            return cls(list(data["classes"]), data["intercept"], parts, dense)


def train_linear(texts: Sequence[str], labels: Sequence[str], *, word_ngrams: tuple[int, int],
                 dense: np.ndarray | None = None, C: float = 10.0) -> LinearTextModel:
    """Fit the word and character TF-IDF views and a class-balanced logistic regression over
    them and the `dense` columns (one row per text); deterministic."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    params = [{"analyzer": "word", "ngram_range": word_ngrams, "lowercase": True}, dict(CHAR_PARAMS)]
    vectorizers = [_vectorizer(p) for p in params]
    blocks = [v.fit_transform(list(texts)) for v in vectorizers]
    if dense is not None:
        blocks.append(sparse.csr_matrix(np.asarray(dense, dtype=float)))
    features = sparse.hstack(blocks).tocsr()
    classifier = LogisticRegression(C=C, max_iter=5000, class_weight="balanced", solver="lbfgs")
    classifier.fit(features, list(labels))
    coef = classifier.coef_
    if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row; softmax needs both
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-classifier.intercept_[0] / 2, classifier.intercept_[0] / 2])
    else:
        intercept = classifier.intercept_
    parts, offset = [], 0
    for p, v in zip(params, vectorizers):
        terms = [t for t, _ in sorted(v.vocabulary_.items(), key=lambda kv: kv[1])]
        parts.append((p, terms, v.idf_.astype(float), coef[:, offset:offset + len(terms)].T.copy()))
        offset += len(terms)
    dense_weights = coef[:, offset:].T.copy() if dense is not None else None
    return LinearTextModel(classifier.classes_, intercept, parts, dense_weights)
