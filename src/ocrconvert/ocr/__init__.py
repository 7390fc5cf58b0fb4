"""The PP-OCR text pipeline: a page in, text lines (quad, text, score) out, on any backend per stage.

``OcrPipeline`` (det -> cls -> rec), its typed parameters (``OcrParams`` = ``DetParams`` + ``ClsParams`` +
``RecParams``), the stage objects (``TextDetector``, ``TextClassifier``, ``TextRecognizer``) and rendered test
pages with known text (``ocrconvert.ocr.pages``). Model sets (``load_set``) build on this package.
"""
from __future__ import annotations

from .classify import TextClassifier
from .detect import Detection, TextDetector, quad_iou, sort_boxes
from .params import ClsParams, DetParams, OcrParams, RecParams
from .pipeline import OcrPipeline, PageResult, TextLine, load_stage, read_image
from .recognize import TextRecognizer, ctc_decode

__all__ = ["OcrPipeline", "PageResult", "TextLine", "OcrParams", "DetParams", "ClsParams", "RecParams",
           "TextDetector", "TextClassifier", "TextRecognizer", "Detection", "load_stage", "read_image",
           "quad_iou", "sort_boxes", "ctc_decode"]
