"""The linter: typed diagnostics, rules registered by code, the runner, suppressions."""
