"""`bnlint rules`: every rule with its code, or one rule's documentation."""

from __future__ import annotations

import click

from bnlint.errors import BnlintError


@click.command()
@click.argument("code", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def command(code: str | None, fmt: str) -> None:
    """List the rules, or explain one (e.g. `bnlint rules BN010`)."""
    from bnlint.lint.registry import all_rules

    rules = all_rules()
    if code:
        key = code.strip().upper()
        by_name = {cls.name: c for c, cls in rules.items()}
        key = by_name.get(code.strip().lower(), key)
        if key not in rules:
            raise BnlintError(f"no rule {code!r} (see `bnlint rules`)")
        cls = rules[key]
        if fmt == "json":
            import json

            click.echo(json.dumps(_entry(cls) | {"documentation": cls.documentation()},
                                  indent=2))
            return
        fix = f"; fix: {cls.fix_kind()}" if cls.fix_kind() else ""
        click.echo(f"{cls.code} {cls.name} (default severity: {cls.severity}{fix})\n")
        click.echo(cls.documentation())
        return
    if fmt == "json":
        import json

        click.echo(json.dumps([_entry(cls) for cls in rules.values()], indent=2))
        return
    width = max(len(cls.name) for cls in rules.values())
    click.echo(f"{'code':<6} {'name':<{width}}  {'default':<7}  {'fix':<6}  summary")
    for cls in rules.values():
        click.echo(f"{cls.code:<6} {cls.name:<{width}}  {str(cls.severity):<7}  "
                   f"{cls.fix_kind() or '':<6}  {cls.summary()}")
    click.echo("\nfix: safe (applied by --fix) or unsafe (needs --unsafe-fixes: it changes "
               "what the net computes or which weights load).")


def _entry(cls) -> dict:
    return {"code": cls.code, "name": cls.name, "severity": str(cls.severity),
            "summary": cls.summary(), "needs_weights": cls.needs_weights,
            "fix": cls.fix_kind()}
