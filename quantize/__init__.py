"""Export and INT8 quantization: training checkpoint -> verified model bundle (``cxr-export``).

Modules: ``formats`` (the registry of export formats), ``onnx_export`` (FP32 ONNX with
``probabilities`` and ``feature_map`` outputs), ``graph_rewrite`` (BatchNorm -> depthwise conv),
``onnx_int8`` (ONNX Runtime static QDQ), ``calibration`` (the recorded calibration images),
``parity`` (figures and the gate, in cxr_core.parity), ``pipeline``
(``export_bundle``), ``verify`` and ``ort_run`` (torch-free checking), ``cli``.

This package's ``__init__`` imports nothing, so ``cxr-export verify`` runs without torch.
"""
