"""alray: active learning for computer vision at video scale, on Ray."""
__version__ = "0.1.0"
