"""Fixtures for the models tests and for other areas that need a models."""
