"""Transformer substrate (TransformerLens 4) and heads."""
