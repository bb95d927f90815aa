"""Fixtures for the corpus tests and for other areas that need a corpus."""
