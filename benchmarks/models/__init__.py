"""PyTorch models the engine is checked against onnxruntime on (exported with torch.onnx).

Written in plain ``torch.nn`` (no torchvision) with random weights from a fixed seed: the point
is operator coverage and numerical agreement, not accuracy. ``export.py`` writes the ONNX files.
"""
