"""Drivers: functions over many runs (sweeps, comparisons, tune) and the executors that run them."""
