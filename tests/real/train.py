"""Trains the tiny model the real-server tests serve: a logistic regression on iris.

Usage: python train.py joblib PATH       (a scikit-learn model file, for KServe)
       python train.py mlflow DIR        (an MLflow model directory)
"""
import sys

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def main() -> None:
    kind, path = sys.argv[1], sys.argv[2]
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    if kind == "joblib":
        import joblib

        joblib.dump(model, path)
    elif kind == "mlflow":
        import mlflow.sklearn

        mlflow.sklearn.save_model(model, path, serialization_format="pickle")
    else:
        sys.exit(f"unknown kind {kind!r}")


if __name__ == "__main__":
    main()
