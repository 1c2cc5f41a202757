"""training-service: point-in-time training sets, scikit-learn pipelines, evaluation, MLflow tracking."""
