"""minicnn: a small, fast, honest CNN framework for pooling studies on MNIST."""
__version__ = "0.1.0"
