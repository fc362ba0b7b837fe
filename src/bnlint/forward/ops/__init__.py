"""Every op module, imported once so that its @register_op decorators run."""

from bnlint.forward.ops import (  # noqa: F401
    activations,
    conv,
    dense,
    eltwise,
    fork,
    loss,
    norm,
    pooling,
    recurrent,
    roi,
    ssd,
    structural,
)
