"""BrainSR's Qt-free super-resolution package: I/O, models, degradations, training, evaluation, inference."""

__version__ = "0.1.0"
