"""bnlint: lint, convert, verify and fold Caffe nets."""

__version__ = "0.1.0"
