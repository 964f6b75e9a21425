"""Corpus loading: Markdown folders -> published :class:`Article` records with citable passages."""

from sovereign_mcp.corpus.loader import load_corpus
from sovereign_mcp.corpus.models import Article, Corpus, CorpusWarning, Passage, Section

__all__ = ["Article", "Corpus", "CorpusWarning", "Passage", "Section", "load_corpus"]
