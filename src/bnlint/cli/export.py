"""`bnlint export onnx`: the net and its weights as an ONNX model, verified before it is written.

Needs the `onnx` extra (onnx, onnxruntime), imported only when this command runs.
Exit 0 written, 1 the exported graph fails ONNX's checks or differs from bnlint's
forward (nothing written), 2 bad input or a layer with no faithful ONNX form.
"""

from __future__ import annotations

import click

from bnlint.cli.options import check_dialect_options, dialect_options, input_shape_option
from bnlint.errors import BnlintError


def _blob_list(ctx, param, values: tuple[str, ...]) -> list[str]:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return names


@click.group()
def command() -> None:
    """Export a Caffe net to another format (onnx)."""


@command.command("onnx")
@click.argument("net_path", metavar="NET")
@click.option("--weights", "weights_path", metavar="W", required=True,
              help="The trained weights (.caffemodel).")
@click.option("-o", "--output", "output", required=True, metavar="OUT.onnx",
              help="Where to write the model.")
@click.option("--opset", type=int, metavar="N",
              help="ONNX opset, 13 to the installed onnx's newest [default: the newest the "
                   "installed onnxruntime runs].")
@input_shape_option
@click.option("--dynamic-batch", is_flag=True,
              help="Make the batch axis of the inputs (and outputs) symbolic (N).")
@click.option("--fold/--no-fold", default=True, show_default=True,
              help="Fold BatchNorm and its Scale into the layer before them (as bnlint "
                   "fold); --no-fold keeps them as BatchNormalization with Caffe's exact "
                   "statistics.")
@click.option("--check-blobs", is_flag=True,
              help="Also require every intermediate blob to match bnlint's forward, not "
                   "only the outputs.")
@click.option("--until", "until", multiple=True, callback=_blob_list, metavar="BLOB[,BLOB]",
              help="End the graph at these blobs (repeatable), e.g. the heads before a "
                   "DetectionOutput.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the verification's random inputs.")
@dialect_options
def onnx_command(net_path: str, weights_path: str, output: str, opset: int | None,
                 input_shapes: dict, dynamic_batch: bool, fold: bool, check_blobs: bool,
                 until: list[str], seed: int, dialect: str | None, proto: str | None) -> None:
    """Export NET with its weights to ONNX, keeping Caffe's blob and layer names.

    Before anything is written the model passes ONNX's checker and shape inference,
    and onnxruntime's outputs on seeded inputs (batch 2 or more, and the written
    batch) match bnlint's forward of NET within the golden tolerance. A layer ONNX
    cannot express exactly is refused by name.
    """
    from bnlint.caffe.netfile import load_net
    from bnlint.export.onnx.model import require_onnx
    from bnlint.files import write_atomic

    require_onnx()
    from bnlint.export.onnx.export import ExportOptions, export_onnx

    if output == "-":
        raise click.UsageError("-o - : an ONNX model is binary; give a file name")
    choice = check_dialect_options(dialect, proto) or "auto"
    # Unknown fields are export's to refuse (it names them all); the weights are read
    # in the net's dialect.
    net = load_net(net_path, weights_path, dialect=choice, refusal=None)
    text_file, weights = net.text, net.weights
    options = ExportOptions(opset=opset, input_shapes=input_shapes, dynamic_batch=dynamic_batch,
                            fold=fold, check_blobs=check_blobs, until=until or None, seed=seed)
    result = export_onnx(text_file, weights, options)
    folded = sum(site.action == "folded" for site in result.folded)
    if result.folded:
        click.echo(f"folded {folded} of {len(result.folded)} BatchNorm layers")
    worst = result.worst()
    shown = f"; worst {worst.comparison.used:.1%} of tolerance" if worst is not None else ""
    what = (f"{len(result.outputs)} outputs and {len(result.blobs)} blobs" if check_blobs
            else f"{len(result.outputs)} outputs")
    batches = " and ".join(str(b) for b in result.verified_batches)
    click.echo(f"verified: ONNX checker and shape inference pass; onnxruntime matches "
               f"bnlint's forward at {what} (batch {batches}, seed {seed}{shown})")
    if not result.outputs:
        raise BnlintError("the exported graph has no outputs", path=net_path)
    write_atomic(output, result.model, inputs=(net_path, weights_path))
    click.echo(f"wrote {output}: opset {result.opset}, {result.layers} layers as "
               f"{result.nodes} nodes")
