"""Recurrent forecasters: torch networks, data, training, ONNX export and contract checks."""
