"""cxr-edge core: the torch-free device side (numpy + Pillow, pydicom optional).

Decoding, the one preprocessing, labels, calibration and (in later stages) the bundle reader and
runtimes. Runs on a Raspberry Pi or a phone. It never imports torch, onnx, tensorflow or kivy.
"""

__version__ = "0.1.0"
