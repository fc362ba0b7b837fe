"""`bnlint draw`: a picture of a net and its findings, or of what changed between two nets."""

from __future__ import annotations

import click

from bnlint.cli.check import check_dialect_options, dialect_options
from bnlint.cli.forward import input_shape_option


@click.command()
@click.argument("net_path", metavar="NET")
@click.option("-o", "--output", default="-", metavar="OUT.svg|OUT.html",
              help="Where to write; the format follows the extension (default: SVG on "
                   "stdout).")
@click.option("--format", "fmt", type=click.Choice(["svg", "html"]),
              help="svg (static, for docs) or html (one self-contained page: pan, zoom, "
                   "search, details); default from the -o extension.")
@click.option("--phase", type=click.Choice(["test", "train"], case_sensitive=False),
              help="The phase drawn (Caffe's FilterNet view; default: the first state "
                   "`check` looks at).")
@click.option("--stage", "stages", multiple=True, metavar="S",
              help="Add a stage to the drawn state (repeatable).")
@click.option("--diff", "diff_path", metavar="B",
              help="Draw B instead, marking what changed against NET: layers added, "
                   "removed, parameters changed (matched by name).")
@click.option("--weights", metavar="W", help="A .caffemodel to check against the net (W rules).")
@input_shape_option
@dialect_options
def command(net_path, output, fmt, phase, stages, diff_path, weights, input_shapes, dialect,
            proto):
    """Draw NET as SVG or HTML, its findings marked on the layers.

    Never fails on findings (they are what it shows): exit 0 when the picture is
    written, 2 when the input cannot be read.
    """
    from bnlint.draw import picture_of, render
    from bnlint.files import write_atomic
    from bnlint.lint.config import ConfigResolver

    check_dialect_options(dialect, proto)
    if fmt is None:
        ext = output.lower().rsplit(".", 1)[-1] if "." in output else ""
        if output != "-" and ext not in ("svg", "html", "htm"):
            raise click.UsageError(f"-o {output}: name it .svg or .html, or pass --format")
        fmt = "html" if ext in ("html", "htm") else "svg"
    resolver = ConfigResolver(None, {"dialect": dialect, "proto": proto})
    options = dict(phase=phase, stages=tuple(stages), input_shapes=input_shapes)
    if diff_path:
        from bnlint.draw.diff import mark_changes

        before = picture_of(net_path, config=resolver.for_path(net_path), **options)
        picture = picture_of(diff_path, config=resolver.for_path(diff_path), weights=weights,
                             **options)
        mark_changes(before, picture)
    else:
        picture = picture_of(net_path, config=resolver.for_path(net_path), weights=weights,
                             **options)
    inputs = (net_path,) + ((diff_path,) if diff_path else ())
    write_atomic(output, render(picture, fmt), inputs=inputs)
