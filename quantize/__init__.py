"""Export and INT8 quantization: training checkpoint -> verified model bundle.

Not built yet: arrives with the "Export and INT8 quantization" issue (see README's stage map).
"""
