"""Corpus loading: Markdown folders -> published :class:`Article` records with citable passages.

The loader is :func:`sovereign_mcp.corpus.loader.load_corpus`; this ``__init__`` re-exports the records only."""

from sovereign_mcp.corpus.models import Article, Corpus, CorpusWarning, Passage, Section

__all__ = ["Article", "Corpus", "CorpusWarning", "Passage", "Section"]
