"""harness: Neural ODEs trained with adjoint-sensitivity gradients, cross-checked across engines."""

__version__ = "0.1.0"
