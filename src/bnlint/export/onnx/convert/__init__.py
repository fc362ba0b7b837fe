"""One module per family of layers; importing this package registers every converter."""

from bnlint.export.onnx.convert import (activations, dense, eltwise, fork, norm,  # noqa: F401
                                        pooling, ssd, structural)
