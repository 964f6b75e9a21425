"""One searchable field (passage body, headings, title, tags...) as a term-weight matrix.

Counts come from scikit-learn's ``CountVectorizer``; document frequencies and the idf vector from
``TfidfTransformer``. Two weightings:

* ``bm25`` (default): Okapi BM25 term weights, ``idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``
  with the Lucene idf ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (Robertson & Zaragoza, "The
  Probabilistic Relevance Framework: BM25 and Beyond", 2009, eq. 3.5 / 3.3).
* ``tfidf``: scikit-learn's ``TfidfTransformer(sublinear_tf=True)`` with L2-normalised rows.

The matrix is kept column-major (the three CSC arrays, as plain NumPy arrays) so a query reads only
the postings of its own terms. scikit-learn and SciPy are imported only to build it, so serving a
cached index never loads them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

import numpy as np

Weighting = Literal["bm25", "tfidf"]


def _identity(tokens: list[str]) -> list[str]:
    return tokens


class FieldIndex:
    """Weights of ``n_units`` documents (rows) over this field's vocabulary (columns).

    Column ``c`` (term) holds the units ``indices[indptr[c]:indptr[c + 1]]`` (ascending) and, at the
    same positions, ``data``: the term weights (``tfidf``) or, for ``bm25``, the term counts
    (1 or 2 bytes each instead of a 4-byte weight), turned into weights when a query reads the
    column, with the same float32 arithmetic as at build time (so the scores are identical).
    """

    __slots__ = ("data", "idf", "indices", "indptr", "k1", "n_units", "norm", "vocabulary")

    def __init__(self, vocabulary: dict[str, int], indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                 n_units: int, idf: np.ndarray | None = None, norm: np.ndarray | None = None,
                 k1: float = 1.2) -> None:
        self.vocabulary = vocabulary
        self.indptr = indptr
        self.indices = indices
        self.data = data
        self.n_units = n_units
        self.idf = idf  # bm25: per term; None when ``data`` holds the weights
        self.norm = norm  # bm25: ``k1 * (1 - b + b * length / avg_length)`` per unit
        self.k1 = k1

    def __getstate__(self) -> tuple[object, ...]:
        return (self.vocabulary, self.indptr, self.indices, self.data, self.n_units, self.idf, self.norm,
                self.k1)

    def __setstate__(self, state: tuple) -> None:
        (self.vocabulary, self.indptr, self.indices, self.data, self.n_units, self.idf, self.norm,
         self.k1) = state

    @classmethod
    def build(
        cls, docs: Sequence[list[str]], weighting: Weighting = "bm25", k1: float = 1.2, b: float = 0.75
    ) -> FieldIndex:
        """Fit on ``docs`` (already analysed token lists, one per unit)."""
        if not any(docs):
            empty = np.zeros(0, dtype=np.int32)
            return cls({}, np.zeros(1, dtype=np.int32), empty, empty.astype(np.float32), len(docs))
        from scipy import sparse
        from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

        counts = CountVectorizer(analyzer=_identity, dtype=np.float32)
        tf = counts.fit_transform(docs).tocsr()
        # Terms are interned: the fields share one copy of each (in memory and in the cache file).
        vocabulary = {sys.intern(str(t)): int(i) for t, i in counts.vocabulary_.items()}
        idf = norm = None
        if weighting == "tfidf":
            csc = sparse.csc_matrix(TfidfTransformer(sublinear_tf=True).fit_transform(tf), dtype=np.float32)
            csc.sort_indices()
            data = csc.data.astype(np.float32, copy=False)
        else:
            n = tf.shape[0]
            df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float32)
            idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
            lengths = np.asarray(tf.sum(axis=1)).ravel()
            avg = float(lengths.mean()) or 1.0
            norm = (k1 * (1.0 - b + b * lengths / avg)).astype(np.float32)
            csc = tf.tocsc()
            csc.sort_indices()
            top = float(csc.data.max()) if csc.nnz else 0.0
            data = csc.data.astype(np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.float32)
        return cls(vocabulary, csc.indptr.astype(np.int32), csc.indices.astype(np.int32), data, len(docs),
                   idf, norm, k1)

    def column(self, col: int) -> tuple[np.ndarray, np.ndarray]:
        """``(units, weights)`` of term column ``col``."""
        lo, hi = self.indptr[col], self.indptr[col + 1]
        units = self.indices[lo:hi]
        if self.idf is None:
            return units, self.data[lo:hi]
        tf = self.data[lo:hi].astype(np.float32)
        # BM25 term weight, evaluated exactly as the weight matrix used to be built.
        return units, self.idf[col] * tf * (self.k1 + 1.0) / (tf + self.norm[units])

    def accumulate(self, scores: np.ndarray, terms: dict[str, float], boost: float = 1.0) -> None:
        """Add ``boost * query_weight * w(term, unit)`` into ``scores`` (length ``n_units``)."""
        if boost == 0.0:
            return
        for term, qweight in terms.items():
            col = self.vocabulary.get(term)
            if col is None:
                continue
            units, weights = self.column(col)
            scores[units] += (boost * qweight) * weights

    def unit_terms(self, terms: dict[str, float], units: np.ndarray) -> np.ndarray:
        """Weights of each of ``terms`` (rows, in order) in each of ``units`` (columns, any order): float32
        ``(len(terms), len(units))``, zero where a unit lacks the term. One binary search per term over its
        postings (ascending), so the cost does not grow with the number of units in the field."""
        out = np.zeros((len(terms), len(units)), dtype=np.float32)
        for row, term in enumerate(terms):
            col = self.vocabulary.get(term)
            if col is None:
                continue
            start, end = int(self.indptr[col]), int(self.indptr[col + 1])
            postings = self.indices[start:end]
            at = np.minimum(np.searchsorted(postings, units), len(postings) - 1)
            found = np.flatnonzero(postings[at] == units)
            values = self.data[start + at[found]]
            if self.idf is None:
                out[row, found] = values
            else:
                tf = values.astype(np.float32)
                out[row, found] = self.idf[col] * tf * (self.k1 + 1.0) / (tf + self.norm[units[found]])
        return out
