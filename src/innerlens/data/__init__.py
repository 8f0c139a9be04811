"""Datasets and deterministic splits."""
