"""Every entry point's options, one module each, importable without torch, mlflow or pandas.

The CLI and MLproject are rendered from these classes, so `innerlens --help` and an option's
one-line error never pay for the libraries a run needs; the families import their config from here.
"""
