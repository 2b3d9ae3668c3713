"""The quantizer: an ONNX CNN -> the WESS int8 network the NPU runs, shaped like a converter pipeline.

::

    frontend ──► datasets ──► calibrate ──► build ────────────► evaluate ──► report, litert
    ONNX -> IR   labelled     activation    integer network     float and    output folder,
    (batch norm  images per   ranges,       per method, width   golden       .tflite file
     folded)     the model    channel       and quantizer       logits,
                 contract     means         (weights: WESS)     metrics

:mod:`pipeline` runs the whole chain as one job (``tools/quantize.py`` is its command line). Beside it:
:mod:`normalize` (the front end's passes, one per export form of a layer), :mod:`weights` (the weight quantization
methods, used by ``build``), :mod:`two_bit` (float design math of the two-bit quantizers UQ, SPTQ, MSPTQ) and
:mod:`infer` (golden inference on a user's int8 tensor). The torch training of the
built-in models is apart, in :mod:`tools.training`.
"""
