"""`bnlint upgrade`: write Caffe's load-time upgrades into a prototxt, comments kept."""

from __future__ import annotations

import click


@click.command()
@click.argument("input_path", metavar="IN")
@click.option("-o", "--output", metavar="OUT", help="Write here instead of stdout.")
@click.option("--in-place", is_flag=True, help="Rewrite IN itself.")
def command(input_path: str, output: str | None, in_place: bool) -> None:
    """Upgrade an old net or solver prototxt IN to the current format.

    V1 'layers' become 'layer' with string types and param blocks, legacy data
    fields move into transform_param, net-level inputs become an Input layer,
    three-param BatchNorm layers get lr_mult 0. The result equals what Caffe
    itself makes of IN on load; comments and layout stay (V0 nets excepted: they
    are re-printed). Notes go to stderr.
    """
    import dataclasses

    from bnlint.caffe.load import parse_text
    from bnlint.caffe.messages import INVALID_VALUE
    from bnlint.caffe.load import schema_problems_error
    from bnlint.files import read_text, write_atomic
    from bnlint.transform.upgrade import upgrade_text

    if in_place and output:
        raise click.UsageError("give either -o OUT or --in-place, not both")
    if in_place and input_path == "-":
        raise click.UsageError("--in-place needs a file, not stdin")
    source = read_text(input_path)
    text_file = parse_text(source)
    invalid = [p for p in text_file.problems if p.kind == INVALID_VALUE]
    if invalid:
        # the upgrade would silently drop those values: refuse, as convert does
        raise schema_problems_error(dataclasses.replace(text_file, problems=invalid))
    result = upgrade_text(text_file)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if result.text == source.text:
        click.echo("note: nothing to upgrade: the file is in the current format", err=True)
    if in_place:
        if result.text != source.text:
            write_atomic(input_path, result.text, in_place=True)
        return
    write_atomic(output or "-", result.text, inputs=(input_path,), in_place_option=True)
