"""One searchable field (passage body, headings, title, tags...) as a term-weight matrix.

Counts come from scikit-learn's ``CountVectorizer``; document frequencies and the idf vector from
``TfidfTransformer``. Two weightings:

* ``bm25`` (default): Okapi BM25 term weights, ``idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``
  with the Lucene idf ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (Robertson & Zaragoza, "The
  Probabilistic Relevance Framework: BM25 and Beyond", 2009, eq. 3.5 / 3.3).
* ``tfidf``: scikit-learn's ``TfidfTransformer(sublinear_tf=True)`` with L2-normalised rows.

The matrix is stored column-major (CSC) so a query reads only the postings of its own terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

Weighting = Literal["bm25", "tfidf"]


def _identity(tokens: list[str]) -> list[str]:
    return tokens


class FieldIndex:
    """Weights of ``n_units`` documents (rows) over this field's vocabulary (columns)."""

    __slots__ = ("n_units", "vocabulary", "weights")

    def __init__(self, vocabulary: dict[str, int], weights: sparse.csc_matrix, n_units: int) -> None:
        self.vocabulary = vocabulary
        self.weights = weights
        self.n_units = n_units

    @classmethod
    def build(
        cls, docs: Sequence[list[str]], weighting: Weighting = "bm25", k1: float = 1.2, b: float = 0.75
    ) -> FieldIndex:
        """Fit on ``docs`` (already analysed token lists, one per unit)."""
        if not any(docs):
            return cls({}, sparse.csc_matrix((len(docs), 0), dtype=np.float32), len(docs))
        counts = CountVectorizer(analyzer=_identity, dtype=np.float32)
        tf = counts.fit_transform(docs).tocsr()
        if weighting == "tfidf":
            weights = TfidfTransformer(sublinear_tf=True).fit_transform(tf)
        else:
            n = tf.shape[0]
            df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float32)
            idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
            lengths = np.asarray(tf.sum(axis=1)).ravel()
            avg = float(lengths.mean()) or 1.0
            norm = k1 * (1.0 - b + b * lengths / avg)
            rows = np.repeat(np.arange(n), np.diff(tf.indptr))
            data = idf[tf.indices] * tf.data * (k1 + 1.0) / (tf.data + norm[rows])
            weights = sparse.csr_matrix((data.astype(np.float32), tf.indices, tf.indptr), shape=tf.shape)
        csc = sparse.csc_matrix(weights, dtype=np.float32)
        csc.indices = csc.indices.astype(np.int32, copy=False)
        csc.indptr = csc.indptr.astype(np.int32, copy=False)
        return cls({str(t): int(i) for t, i in counts.vocabulary_.items()}, csc, len(docs))

    def accumulate(self, scores: np.ndarray, terms: dict[str, float], boost: float = 1.0) -> None:
        """Add ``boost * query_weight * w(term, unit)`` into ``scores`` (length ``n_units``)."""
        if boost == 0.0:
            return
        w = self.weights
        for term, qweight in terms.items():
            col = self.vocabulary.get(term)
            if col is None:
                continue
            lo, hi = w.indptr[col], w.indptr[col + 1]
            scores[w.indices[lo:hi]] += (boost * qweight) * w.data[lo:hi]
