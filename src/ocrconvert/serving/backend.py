"""The Python-backend models of a Triton repository (``model.py`` in each is a three-line shim onto these).

* :class:`StageModel` serves one stage's artifact through ``ocrconvert.load()`` (PyTorch graph / native / AOT, or
  ONNX on a server without the onnxruntime backend).
* :class:`OcrModel` is the whole OCR as a BLS model: encoded image bytes in (``image``, UINT8 [-1]), ``boxes`` [n,4,2], ``texts`` [n],
  ``scores`` [n] out. Its pre/post-processing is :class:`ocrconvert.ocr.OcrPipeline` itself, on runners that call
  the stage models through Triton (``TritonStageRunner``), so the server answers what ``ocrconvert ocr`` answers.

Both take Triton's ``triton_python_backend_utils`` as the class attribute ``pb`` (it exists only inside the stub).
"""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.json"
ARTIFACT_DIR = "artifact"


class _TritonModel:
    pb = None  # triton_python_backend_utils, set by model.py

    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        self.version_dir = Path(args["model_repository"]) / str(args["model_version"])
        self.setup()

    def setup(self):  # pragma: no cover - each model's own
        raise NotImplementedError

    def answer(self, request):  # pragma: no cover
        raise NotImplementedError

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self.pb.InferenceResponse(output_tensors=self.answer(request)))
            except Exception as exc:  # one bad request answers an error; the model keeps serving
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                responses.append(self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(message)))
        return responses


class StageModel(_TritonModel):
    """One stage's artifact (``1/artifact/``) through ``ocrconvert.load()``: the outputs the config declares."""

    def setup(self):
        from ..runners import load

        self.runner = load(self.version_dir / ARTIFACT_DIR)
        self.input_names = [t["name"] for t in self.config["input"]]
        self.output_names = [t["name"] for t in self.config["output"]]

    def answer(self, request):
        feed = {name: self.pb.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
        out = self.runner.infer(feed)
        return [self.pb.Tensor(name, np.ascontiguousarray(out[name])) for name in self.output_names]


class TritonStageRunner:
    """A runner (``input_names``, ``infer(feed) -> dict``) whose inference is a BLS request to a stage model."""

    def __init__(self, pb, model: str, inputs: list[str], outputs: list[str]):
        self.pb, self.model, self.input_names, self.output_names = pb, model, inputs, outputs
        self.backend = f"triton:{model}"

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [self.pb.Tensor(name, np.ascontiguousarray(value)) for name, value in feed.items()]
        request = self.pb.InferenceRequest(model_name=self.model, inputs=tensors,
                                           requested_output_names=self.output_names)
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"stage model {self.model}: {response.error().message()}")
        return {name: self.pb.get_output_tensor_by_name(response, name).as_numpy() for name in self.output_names}


def params_from_dict(doc: dict):
    """:meth:`OcrParams.to_dict` read back (JSON lists back to the tuples the records hold)."""
    from ..ocr.params import ClsParams, DetParams, OcrParams, RecParams

    def build(klass, values):
        return klass(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    return OcrParams(build(DetParams, doc["det"]), build(ClsParams, doc["cls"]), build(RecParams, doc["rec"]))


def decode_page(blob: bytes, max_side: int):
    """Encoded image bytes as a PIL image, refused (ValueError) when empty, unreadable or larger than ``max_side``
    on a side — checked from the header, before the pixels are decoded."""
    from PIL import Image

    if not blob:
        raise ValueError("the image is empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(blob))
        w, h = im.size
        if max(w, h) > max_side:
            raise ValueError(f"the image is {w}x{h} pixels; this model takes at most {max_side} on a side")
        im.load()
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"the bytes are not a readable image ({type(exc).__name__}: {exc})") from None
    return im


class OcrModel(_TritonModel):
    """det -> (cls) -> rec: OcrPipeline on Triton stage models; ``pipeline.json`` holds the stage names, the
    parameters, the dictionary and the image-size limit that ``triton-repo`` resolved from the set."""

    def setup(self):
        from ..ocr import OcrPipeline

        spec = json.loads((self.version_dir / PIPELINE_FILE).read_text(encoding="utf-8"))
        runners = {stage: TritonStageRunner(self.pb, s["model"], s["inputs"], s["outputs"])
                   for stage, s in spec["stages"].items()}
        self.max_side = int(spec["max_image_side"])
        self.pipeline = OcrPipeline(runners["det"], runners["rec"], runners.get("cls"),
                                    dictionary=spec["dictionary"], params=params_from_dict(spec["params"]))

    def answer(self, request):
        data = self.pb.get_input_tensor_by_name(request, "image").as_numpy()
        page = self.pipeline(decode_page(data.tobytes(), self.max_side))
        boxes = np.asarray([ln.box for ln in page.lines], np.float32).reshape(-1, 4, 2)
        texts = np.asarray([ln.text.encode("utf-8") for ln in page.lines], dtype=np.object_)
        scores = np.asarray([ln.score for ln in page.lines], np.float32)
        return [self.pb.Tensor("boxes", boxes), self.pb.Tensor("texts", texts), self.pb.Tensor("scores", scores)]
