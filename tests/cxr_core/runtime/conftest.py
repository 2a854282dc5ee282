"""Fixtures of the runtime tests: real .tflite files built with TensorFlow (see tflite_files)."""

from tests.cxr_core.runtime.tflite_files import tflite_files

__all__ = ["tflite_files"]
