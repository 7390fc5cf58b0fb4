"""PaddleOCR's own pipeline on local model folders, offline: the oracle of test_fidelity.py.

Run with a python that has ``paddleocr==3.7.0`` (the ``fidelity`` extra; it pins its own opencv, so it
usually lives in its own venv)::

    python paddleocr_oracle.py --det DET_DIR --rec REC_DIR --out result.json page1.png page2.png ...

Legacy model folders (``inference.pdmodel`` without ``inference.yml``, as PP-OCRv4's) get a PaddleX
``inference.yml`` written into a scratch copy (links to the weights): PaddleX reads its pre/post-processing
from there. Doc preprocessing and the text-line classifier are off; the rest are PaddleOCR 3.7's defaults.
Writes ``{"pages": [{"image", "boxes", "texts", "scores"}], "versions": {...}}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")  # offline: no hoster probing

DET_YML = {
    "Global": {"model_name": "PP-OCRv4_mobile_det"},
    "PreProcess": {"transform_ops": [
        {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
        {"DetLabelEncode": None},
        {"DetResizeForTest": {"resize_long": 960}},
        {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": "1./255.",
                            "order": "hwc"}},
        {"ToCHWImage": None},
        {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}},
    ]},
    "PostProcess": {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000,
                    "unclip_ratio": 1.5},
}


def rec_yml(dictionary: list[str]) -> dict:
    return {
        "Global": {"model_name": "PP-OCRv4_mobile_rec"},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
            {"RecResizeImg": {"image_shape": [3, 48, 320]}},
            {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_gtc", "length", "valid_ratio"]}},
        ]},
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": dictionary},
    }


def with_yml(folder: Path, kind: str, scratch: Path) -> Path:
    """``folder`` itself when it has an inference.yml, else a scratch copy (links) with one written."""
    if (folder / "inference.yml").is_file():
        return folder
    import yaml

    out = scratch / kind
    out.mkdir()
    for f in folder.iterdir():
        (out / f.name).symlink_to(f.resolve())
    if kind == "det":
        cfg = DET_YML
    else:
        dict_files = sorted(folder.glob("*.txt"))
        if not dict_files:
            sys.exit(f"{folder}: no inference.yml and no dictionary .txt")
        lines = dict_files[0].read_text(encoding="utf-8").split("\n")
        cfg = rec_yml([ln.rstrip("\r") for ln in lines if ln.rstrip("\r") != ""])
    (out / "inference.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--det", required=True, type=Path)
    ap.add_argument("--rec", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()

    import paddle
    import paddleocr
    from paddleocr import PaddleOCR

    with tempfile.TemporaryDirectory() as tmp:
        det = with_yml(args.det, "det", Path(tmp))
        rec = with_yml(args.rec, "rec", Path(tmp))
        import yaml

        det_name = yaml.safe_load((det / "inference.yml").read_text(encoding="utf-8"))["Global"]["model_name"]
        rec_name = yaml.safe_load((rec / "inference.yml").read_text(encoding="utf-8"))["Global"]["model_name"]
        ocr = PaddleOCR(text_detection_model_dir=str(det), text_detection_model_name=det_name,
                        text_recognition_model_dir=str(rec), text_recognition_model_name=rec_name,
                        use_doc_orientation_classify=False, use_doc_unwarping=False,
                        use_textline_orientation=False, device="cpu", enable_mkldnn=False)
        pages = []
        for image in args.images:
            res = ocr.predict(image)[0]
            pages.append({"image": image,
                          "boxes": [[[float(x), float(y)] for x, y in p] for p in res["rec_polys"]],
                          "texts": list(res["rec_texts"]), "scores": [float(s) for s in res["rec_scores"]]})
    args.out.write_text(json.dumps({"pages": pages, "versions": {"paddleocr": paddleocr.__version__,
                                                                 "paddle": paddle.__version__}}), encoding="utf-8")


if __name__ == "__main__":
    main()
