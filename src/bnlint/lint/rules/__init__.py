"""Every rule module, imported once so that its @register_rule decorators run."""

from bnlint.lint.rules import batchnorm, dialect, framework, schema, structure, weights  # noqa: F401
