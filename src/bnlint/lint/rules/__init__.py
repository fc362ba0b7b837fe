"""Every rule module, imported once so that its @register_rule decorators run."""

from bnlint.lint.rules import batchnorm, framework, schema, structure  # noqa: F401
