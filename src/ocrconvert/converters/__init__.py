"""Built-in converters, one module per route; importing this package registers them."""
from . import onnx_torch, onnx_trt, paddle_onnx, paddle_torch, torch_aot, torch_onnx  # noqa: F401
