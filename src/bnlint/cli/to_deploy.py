"""`bnlint to-deploy`: the deploy net of a train/test prototxt, comments and layout kept."""

from __future__ import annotations

import sys

import click

from bnlint.cli.options import parse_shape_option as _shape_option


@click.command()
@click.argument("train_path", metavar="TRAIN")
@click.option("-o", "--output", metavar="OUT", help="Write here instead of stdout.")
@click.option("--stage", "stages", multiple=True, metavar="S",
              help="Add a stage to the net state (repeatable), as a solver's test_state does.")
@click.option("--phase", type=click.Choice(["test", "train"]),
              help="The phase whose view of the net is kept (default test; train for a net "
                   "whose rules only name TRAIN).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=DIMS",
              callback=_shape_option,
              help="Shape of an input, e.g. data=1,3,224,224 (repeatable); needed when "
                   "the prototxt does not tell it.")
@click.option("--batch", type=click.IntRange(min=1), metavar="N",
              help="Batch size of every input (default: 1, or what the net declares); wins over the batch of --input-shape.")
@click.option("--no-softmax", is_flag=True,
              help="Leave the logits as the output instead of turning the "
                   "SoftmaxWithLoss into a Softmax 'prob'.")
@click.option("--keep-fillers", is_flag=True, help="Keep weight_filler, bias_filler, ...")
@click.option("--check", "check_path", metavar="DEPLOY",
              help="Compare with an existing deploy net instead of printing; exit 1 when "
                   "they differ.")
@click.option("--weights", metavar="W",
              help="A .caffemodel: warn about layers with parameters it has no blobs for.")
@click.option("--draw", "draw_path", metavar="OUT.html",
              help="Also write a picture of the deploy net with what changed against "
                   "TRAIN (HTML, or SVG for OUT.svg).")
def command(train_path, output, stages, phase, input_shapes, batch, no_softmax, keep_fillers,
            check_path, weights, draw_path):
    """Make the deploy net of a train/test prototxt TRAIN.

    Keeps the TEST view (FilterNet), turns the data layers into one Input layer,
    removes losses, accuracies and everything that only fed them, sets
    use_global_stats: true on BatchNorm (eps kept), strips fillers and param
    blocks (named ones, for weight sharing, stay). Every other byte, comments
    included, stays as written. Notes go to stderr.

    With --check, the batch size and the input shapes that cannot be inferred
    are taken from DEPLOY unless given.
    """
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.netfile import reparse
    from bnlint.caffe.phase import Phase
    from bnlint.files import Outputs, read_text, write_atomic
    from bnlint.transform.deploy import DeployOptions, compare_deploy, to_deploy

    for target in (output, draw_path):
        if target:
            Outputs((train_path, check_path, weights)).check(target)
    source = read_text(train_path)
    text_file = parse_text(source)
    if text_file.problems:      # Caffe would refuse the deploy net made from it
        from bnlint.caffe.load import schema_problems_error

        raise schema_problems_error(text_file, "cannot write a deploy net Caffe loads")
    if stages:
        from bnlint.caffe.net import net_view

        known = net_view(text_file).stages()
        unknown = [s for s in stages if s not in known]
        if unknown:     # reported, not refused: the deploy net of a deploy net is itself
            click.echo(f"note: no include/exclude rule of the net names stage "
                       f"{', '.join(repr(s) for s in unknown)}, so it selects nothing "
                       f"({'its stages: ' + ', '.join(known) if known else 'it names no stage'})",
                       err=True)
    if batch is not None:   # --batch wins over the batch of --input-shape
        input_shapes = {name: (batch, *shape[1:]) if shape else shape
                        for name, shape in input_shapes.items()}
    options = DeployOptions(phase=Phase.parse(phase) if phase else None, stages=tuple(stages),
                            input_shapes=dict(input_shapes), batch=batch,
                            softmax=not no_softmax, keep_fillers=keep_fillers)
    reference = None
    if check_path:
        from bnlint.transform.deploy import reference_input_shapes

        reference = parse_text(read_text(check_path), dialect=_dialect(text_file))
        options.fallback_shapes = reference_input_shapes(reference)
        if batch is None:
            batches = {s[0] for s in options.fallback_shapes.values() if s}
            if len(batches) == 1:
                options.batch = batches.pop()
    result = to_deploy(text_file, options)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if weights:
        _warn_missing_weights(reparse(text_file, result.text), weights, keep_fillers)
    if output:
        write_atomic(output, result.text, inputs=(train_path, check_path, weights))
    if draw_path:
        from bnlint.draw import change_picture, format_for, render

        picture = change_picture(train_path, result.text, output or "deploy net",
                                 phase=result.state.phase.name.lower(),
                                 stages=result.state.stages)
        write_atomic(draw_path, render(picture, format_for(draw_path)),
                     inputs=(train_path, check_path, weights, output))
    if reference is None:
        if not output:
            write_atomic("-", result.text)
        return
    generated = reparse(text_file, result.text)
    differences = compare_deploy(generated, reference, result.state)
    if not differences:
        click.echo(f"{check_path}: the generated deploy net matches")
        return
    click.echo(f"{check_path}: {len(differences)} difference(s) from the generated deploy net:")
    for line in differences:
        click.echo(f"  {line}")
    sys.exit(1)


def _dialect(text_file):
    """Read the deploy file in the train net's dialect, so their fields compare alike."""
    dialect = getattr(text_file, "dialect", None)
    return dialect if dialect is not None else "auto"


def _warn_missing_weights(deploy, weights: str, keep_fillers: bool) -> None:
    from bnlint.transform.deploy import caffemodel_blob_counts, layers_missing_weights

    counts = caffemodel_blob_counts(weights)
    missing = layers_missing_weights(deploy, counts)
    if not missing:
        return
    why = ("Caffe will initialise them from their fillers, not from training" if keep_fillers
           else "their fillers were stripped, so Caffe will leave them at zero")
    click.echo(f"warning: {len(missing)} layer(s) have parameters but no blobs in {weights}; "
               f"{why}:", err=True)
    for lv in missing:
        click.echo(f"  '{lv.name}' ({lv.type})", err=True)
