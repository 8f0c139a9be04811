"""innerlens: MLflow-tracked experiments on how small transformers learn and model themselves."""
__version__ = "0.1.0"
