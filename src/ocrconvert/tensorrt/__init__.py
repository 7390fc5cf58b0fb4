"""Everything on the TensorRT path that runs without TensorRT, one module per concern.

* ``profiles``: optimization profiles (``--shapes`` > ``inference.yml`` > model metadata > the family's
  defaults > fixed dims) and their validation;
* ``calibration``: INT8 calibration batches, real images through the family's preprocessing;
* ``precision``: the FP16-cast ONNX and the INT8 Q/DQ ONNX TensorRT builds strongly typed;
* ``options``: ``TrtOptions``, the one options record of the ``trt-build`` and ``trt-export`` routes;
* ``plan``: the prepared model (``prepare``), the equivalent ``trtexec`` command, the engine manifest.

No module here imports ``tensorrt``: ``converters/onnx_trt.py`` builds engines, ``runners/tensorrt.py``
runs them, and the spine (``pipeline.convert``) drives both routes.
"""
