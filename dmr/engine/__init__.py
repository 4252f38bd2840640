"""Inference engines behind one interface (protocol.py). Importing this package loads no native code."""
