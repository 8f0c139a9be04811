"""Experiment families: each holds only what is particular to its experiment."""
