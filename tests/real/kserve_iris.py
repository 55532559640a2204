"""Serves model.joblib with KServe as the model "iris", on 127.0.0.1 only, REST only.

One port answers both protocols: v1 at /v1/models/iris:predict and v2 (Open Inference
Protocol) at /v2/models/iris/infer.

Usage: python kserve_iris.py MODEL_PATH PORT
"""
import sys

import joblib
import numpy as np
import uvicorn

# KServe 0.21 hard-codes host 0.0.0.0 for its REST server; keep the test server on loopback.
_configure = uvicorn.Config.__init__


def _loopback(self, *args, **kwargs):
    kwargs["host"] = "127.0.0.1"
    _configure(self, *args, **kwargs)


uvicorn.Config.__init__ = _loopback

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402


class Iris(Model):
    def __init__(self, path: str):
        super().__init__("iris")
        self.model = joblib.load(path)
        self.ready = True

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            rows = payload.inputs[0].as_numpy()
            classes = self.model.predict(rows).astype(np.int64)
            output = InferOutput(name="predictions", shape=list(classes.shape), datatype="INT64")
            output.set_data_from_numpy(classes, binary_data=False)
            return InferResponse(
                model_name=self.name, infer_outputs=[output], response_id=payload.id or "iris"
            )
        rows = np.asarray(payload["instances"])
        return {"predictions": self.model.predict(rows).tolist()}


if __name__ == "__main__":
    model_path, port = sys.argv[1], int(sys.argv[2])
    ModelServer(http_port=port, enable_grpc=False, workers=1).start([Iris(model_path)])
