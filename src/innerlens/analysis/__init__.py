"""Pure analysis functions (no MLflow): LLC, weight statistics, ..."""
