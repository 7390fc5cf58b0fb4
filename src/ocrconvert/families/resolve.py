from __future__ import annotations

from ..errors import UsageError
from .base import Family, GenericFamily, ModelInfo
from .cls import ClsFamily
from .det import DetDbFamily
from .rec import RecCtcFamily
from .table import BOX_DIMS, TableFamily

FAMILIES: dict[str, type[Family]] = {
    f.name: f for f in (RecCtcFamily, DetDbFamily, ClsFamily, TableFamily, GenericFamily)
}
_POSTPROCESS = {"CTCLabelDecode": "rec-ctc", "DBPostProcess": "det-db", "ClsPostProcess": "cls",
                "TableLabelDecode": "table"}
# a plain transformers checkpoint (config.json + safetensors, as published on the hub) names its family by
# ``model_type`` / ``architectures``; only PP-OCR / PP-LCNet types whose output the OCR families judge
_MODEL_TYPE = {
    "pp_ocrv5_mobile_det": "det-db", "pp_ocrv5_server_det": "det-db", "pp_ocrv6_small_det": "det-db",
    "pp_ocrv6_medium_det": "det-db",
    "pp_ocrv5_mobile_rec": "rec-ctc", "pp_ocrv5_server_rec": "rec-ctc", "pp_ocrv6_small_rec": "rec-ctc",
    "pp_ocrv6_tiny_rec": "rec-ctc",
    "pp_lcnet": "cls", "ocrconvert_ppocr_mobilenetv3_cls": "cls",
}
_ARCHITECTURE_SUFFIX = {"ForTextRecognition": "rec-ctc", "ForObjectDetection": "det-db",
                        "ForImageClassification": "cls"}


def family_of_transformers_config(model_type: str | None, architectures: list[str] | None = None) -> str | None:
    """The family a transformers ``config.json`` names: its ``model_type`` when it is a known PP-OCR / PP-LCNet
    type, else a PP-OCR class name in ``architectures``; None for anything else (judged by shape)."""
    name = _MODEL_TYPE.get(str(model_type))
    if name:
        return name
    for arch in architectures or []:
        if isinstance(arch, str) and arch.startswith(("PPOCR", "PPLCNet")):
            name = next((f for s, f in _ARCHITECTURE_SUFFIX.items() if arch.endswith(s)), None)
            if name:
                return name
    return None


def get_family(name: str) -> type[Family]:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(f"unknown model family {name!r}", hint=f"Choose one of: {', '.join(FAMILIES)}") from None


def _guess_from_shapes(info: ModelInfo) -> str:
    if len(info.inputs) != 1 or not info.outputs:
        return "generic"
    x, y = info.inputs[0].shape, info.outputs[0].shape
    if len(x) != 4:
        return "generic"
    if len(info.outputs) == 2 and all(len(o.shape) == 3 for o in info.outputs):
        last = sorted((o.shape[-1] if isinstance(o.shape[-1], int) else 0) for o in info.outputs)
        if last[0] in BOX_DIMS and last[1] > max(BOX_DIMS):  # cell boxes + structure tokens per decode step
            return "table"
    if len(y) == 3 and isinstance(y[-1], int) and y[-1] > 2 and len(info.outputs) == 1:
        return "rec-ctc"
    if len(y) == 4 and y[1] == 1 and len(info.outputs) == 1:
        return "det-db"
    if len(y) == 2 and isinstance(y[-1], int) and 2 <= y[-1] <= 16 and len(info.outputs) == 1:
        return "cls"
    return "generic"


def resolve_family(info: ModelInfo, override: str | None = None) -> Family:
    if override:
        return get_family(override)(info)
    name = (info.metadata or {}).get("ocrconvert.family")
    if not name:
        post = (info.config or {}).get("PostProcess", {}) or {}
        name = _POSTPROCESS.get(post.get("name", ""))
    if not name:
        meta = info.metadata or {}
        name = family_of_transformers_config(meta.get("transformers.model_type"),
                                             str(meta.get("transformers.architectures") or "").split(","))
    if not name:
        # by shape; a "character" metadata key alone proves nothing (table/layout models carry one too)
        name = _guess_from_shapes(info)
    return FAMILIES.get(name, GenericFamily)(info)
