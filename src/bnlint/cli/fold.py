"""`bnlint fold`: fold BatchNorm (and its Scale) into the layer before it, weights included.

Prints every BatchNorm with what happened to it and why, verifies the result with
the forward (unless --no-verify), and only then writes the new prototxt and
.caffemodel. Exit 0 written, 1 the folded net's forward differs (nothing written),
2 bad input (no weights, a training net, a net Caffe refuses).
"""

from __future__ import annotations

import click

from bnlint.cli.options import check_dialect_options, dialect_options, input_shape_option
from bnlint.errors import BnlintError


def _location(source, site) -> str:
    line, _ = source.line_col(site.batchnorm.node.start)
    return f"{source.path}:{line}"


def _default_weights_out(output: str) -> str:
    """OUT.prototxt -> OUT.caffemodel; the folded net is useless without its weights."""
    from pathlib import Path

    if output == "-":
        raise click.UsageError("with -o - (stdout), say where the weights go: --weights-out "
                               "OUT.caffemodel")
    path = Path(output)
    weights = path.with_suffix(".caffemodel") if path.suffix else Path(output + ".caffemodel")
    if weights == path:
        raise click.UsageError(f"-o {output} ends in .caffemodel; name the prototxt "
                               f"OUT.prototxt (or give --weights-out)")
    return str(weights)


@click.command()
@click.argument("net_path", metavar="NET")
@click.option("--weights", "weights_path", metavar="W",
              help="The trained weights (.caffemodel): folding needs the BatchNorm "
                   "statistics and the producers' weights.")
@click.option("-o", "--output", "output", required=True, metavar="OUT.prototxt",
              help="Where to write the folded net ('-' for stdout).")
@click.option("--weights-out", "weights_out", metavar="OUT.caffemodel",
              help="Where to write the folded weights [default: OUT with the suffix "
                   ".caffemodel].")
@click.option("--keep-unfoldable", is_flag=True,
              help="Leave a BatchNorm that cannot fold as it is, instead of turning it "
                   "(and its Scale) into one Scale layer with bias.")
@click.option("--no-verify", "no_verify", is_flag=True,
              help="Write without comparing the forward of both nets.")
@click.option("--to-dialect", "to_dialect", type=click.Choice(["bvlc"]),
              help="Also write the BatchNorms that stay in BVLC's form: a kept NVIDIA Caffe "
                   "BatchNorm or SegNet BN becomes BatchNorm + Scale with bias (weights "
                   "split accordingly); one that cannot is an error.")
@input_shape_option
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the verification's random inputs.")
@click.option("--draw", "draw_path", metavar="OUT.html",
              help="Also write a picture of the folded net with what changed against NET "
                   "(HTML, or SVG for OUT.svg).")
@dialect_options
def command(net_path: str, weights_path: str | None, output: str, weights_out: str,
            keep_unfoldable: bool, no_verify: bool, to_dialect: str | None, input_shapes: dict,
            seed: int, draw_path: str | None, dialect: str | None, proto: str | None) -> None:
    """Fold each BatchNorm (and the Scale after it) in NET into the Convolution,
    Deconvolution or InnerProduct that produces its input.

    Matches layers by the blob graph, keeps eps and Caffe's scale factor, handles
    Deconvolution's output axis and groups, NVIDIA Caffe's BatchNorm (5 blobs with
    scale_bias) and SegNet's BN (bn_mode INFERENCE). A BatchNorm that cannot fold
    becomes one Scale layer with bias. The result is checked with the forward on
    seeded inputs before anything is written.
    """
    from bnlint.caffe.netfile import load_net
    from bnlint.files import Outputs
    from bnlint.transform.fold import AS_SCALE, CONVERTED, FOLDED, KEPT, fold

    choice = check_dialect_options(dialect, proto) or "auto"
    if not weights_path:
        raise BnlintError("folding needs trained statistics: BatchNorm's mean and variance "
                          "and the layers' weights are in the .caffemodel, not in the "
                          "prototxt; pass --weights W.caffemodel", path=net_path)
    weights_out = weights_out or _default_weights_out(output)
    if weights_out == output:
        raise click.UsageError("-o and --weights-out name the same file")
    outputs = Outputs((net_path, weights_path))
    outputs.check(weights_out)
    outputs.check(output)
    if draw_path:
        outputs.check(draw_path)
    # Fork fields are kept as written (a text rewrite); the weights are read in the
    # net's dialect.
    net = load_net(net_path, weights_path, dialect=choice, refusal=None)
    text_file, weights = net.text, net.weights
    result = fold(text_file, weights, keep_unfoldable=keep_unfoldable, verify=not no_verify,
                  input_shapes=input_shapes, seed=seed, to_dialect=to_dialect)
    plan = result.plan
    echo = (lambda message: click.echo(message, err=True)) if output == "-" else click.echo
    if not plan.sites:
        echo(f"{net_path}: no BatchNorm layers, nothing to fold")
    for site in plan.sites:
        echo(f"{_location(text_file.source, site)}: {site.describe()}")
    for warning in plan.warnings:
        echo(f"warning: {warning}")
    counts = {action: sum(site.action == action for site in plan.sites)
              for action in (FOLDED, AS_SCALE, KEPT, CONVERTED)}
    converted = (f", {counts[CONVERTED]} written as BVLC BatchNorm (+ Scale)"
                 if counts[CONVERTED] else "")
    echo(f"{counts[FOLDED]} folded, {counts[AS_SCALE]} turned into Scale, {counts[KEPT]} kept"
         f"{converted}")
    if result.verification is not None:
        worst = result.verification.worst()
        shown = (f"worst {worst.used:.1%} of tolerance" if worst is not None
                 else "nothing to compare")
        echo(f"verified: {len(result.verification.sites)} rewritten layers and "
             f"{len(result.verification.outputs)} outputs match on seeded inputs (seed "
             f"{seed}; {shown})")
        if result.verification.noise_limited:
            echo(f"note: {', '.join(result.verification.noise_limited)} matched only net of "
                 f"rounding noise: the input net itself moves that much when its inputs move "
                 f"by 4 float32 ulps (BatchNorm variances near 0 amplify rounding)")
    outputs.add(weights_out, result.caffemodel)     # both appear, or neither
    outputs.add(output, plan.text)
    if draw_path:
        from bnlint.draw import change_picture, format_for, render
        from bnlint.lint.config import LintConfig

        picture = change_picture(net_path, plan.text, output if output != "-" else "folded net",
                                 config=LintConfig().merged(dialect=dialect, proto=proto))
        outputs.add(draw_path, render(picture, format_for(draw_path)))
    outputs.commit()
    if output != "-":
        echo(f"wrote {output} and {weights_out}")
