"""Every rule module, imported once so that its @register_rule decorators run."""

from bnlint.lint.rules import (affine, batchnorm, dialect, framework, phases,  # noqa: F401
                              schema, structure, weights)
