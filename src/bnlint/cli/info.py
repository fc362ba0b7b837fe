"""`bnlint info`: a net's layers with their shapes, parameter counts and MACs.

Descriptive, so it does not stop at the first problem: where a shape cannot be
known (a data layer without --input-shape, a fork layer) it shows "?" and says why
under the table. Shapes and parameters come from `caffe.shapes`, MACs from
`caffe.cost`; NumPy is needed only with --weights.
"""

from __future__ import annotations

import click

from bnlint.cli.options import (check_shape_names, color_option, format_option, input_shape_option, net_state,
                                phase_option, require_net, stdout_console, weights_option)


def human(number: int) -> str:
    """1234567 -> '1.23 M' (SI prefixes, three significant digits)."""
    for value, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if number >= value:
            return f"{number / value:.3g} {suffix}"
    return str(number)


#: Longest text shown whole in a table cell: the table wraps each cell line by line,
#: which takes time quadratic in its length (a 10 MB layer name took 40 s).
MAX_CELL = 200


def _cell(text: str) -> str:
    if len(text) <= MAX_CELL:
        return text
    return f"{text[:150]}…({len(text):,} characters)…{text[-30:]}"


def _shape_text(shape) -> str:
    if shape is None:
        return "?"
    return "x".join(map(str, shape)) or "scalar"


def _table(summary, weights):
    """The layer table; name columns are as wide as their longest name, so a name is
    wrapped between names, never cut inside one."""
    from rich.table import Table

    macs_title = "MACs (batch 1)" if summary.batch_one else "MACs"
    table = Table()
    for name, justify, wrap in (("#", "right", False), ("layer", "left", True),
                                ("type", "left", False), ("bottoms", "left", True),
                                ("tops", "left", True), ("output shape", "left", False),
                                ("params", "right", False), (macs_title, "right", False)):
        table.add_column(name, justify=justify, overflow="fold", no_wrap=not wrap)
    if weights is not None:
        table.add_column("weights")
    for layer in summary.layers:
        row = [str(layer.position), _cell(layer.name), _cell(layer.type),
               _cell(", ".join(layer.bottoms)), _cell(", ".join(layer.tops)),
               ", ".join(_shape_text(s) for s in layer.top_shapes),
               f"{layer.param_count:,}" if layer.param_count else "",
               human(layer.macs) if layer.macs else ""]
        if weights is not None:
            row.append("stored" if layer.name in weights and len(weights[layer.name])
                       else "fillers" if layer.param_shapes else "")
        table.add_row(*row)
    table.add_section()
    partial = "+" if summary.partial_layers else ""
    totals = ["", "total" + (" (partial)" if partial else ""), f"{len(summary.layers)} layers",
              "", "", "", f"{summary.total_params:,}{partial}", human(summary.total_macs) + partial]
    if weights is not None:
        totals.append("")
    table.add_row(*totals)
    for column in table.columns:
        column.min_width = max((len(word) for cell in column.cells
                                for word in str(cell).split(" ")), default=0)
    return table


def _print_text(net_path: str, summary, weights, color: bool | None) -> None:
    from rich.measure import Measurement

    table = _table(summary, weights)
    console = stdout_console(color)
    console.print(f"{net_path} ({summary.state})", highlight=False, soft_wrap=True)
    # wider than the terminal rather than a name cut in two
    needed = Measurement.get(console, console.options.update(width=1 << 20), table).minimum
    console.width = max(console.width, needed)
    console.print(table, crop=False)
    partial = "+" if summary.partial_layers else ""
    batch_note = " (batch 1; the net's own batch may differ)" if summary.batch_one else ""
    console.print(f"parameters: {summary.total_params:,}{partial} "
                  f"({human(summary.total_params * 4)}B as float32); multiply-accumulates: "
                  f"{summary.total_macs:,}{partial}{batch_note}", highlight=False, soft_wrap=True)
    unknown = summary.partial_layers
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        console.print(f"partial totals: {len(unknown)} layer(s) of unknown shape count as 0 "
                      f"({shown})", highlight=False, soft_wrap=True)
    for note in summary.notes:
        click.echo(f"bnlint: note: {note}", err=True)


def _print_json(net_path: str, summary, weights, color: bool | None) -> None:
    """Versioned like check's JSON; shapes unknown are null, notes are in the document."""
    import json

    def shape(value):
        return None if value is None else list(value)

    layers = []
    for layer in summary.layers:
        entry = {"position": layer.position, "name": layer.name, "type": layer.type,
                 "bottoms": layer.bottoms, "tops": layer.tops,
                 "top_shapes": [shape(s) for s in layer.top_shapes],
                 "param_shapes": [shape(s) for s in layer.param_shapes],
                 "params": layer.param_count, "macs": layer.macs, "unknown": layer.unknown}
        if weights is not None:
            entry["weights"] = ("stored" if layer.name in weights and len(weights[layer.name])
                                else "fillers" if layer.param_shapes else None)
        layers.append(entry)
    document = {"version": JSON_VERSION, "net": net_path, "state": str(summary.state),
                "macs_batch": 1 if summary.batch_one else None, "layers": layers,
                "totals": {"layers": len(summary.layers), "params": summary.total_params,
                           "macs": summary.total_macs,
                           "partial": bool(summary.partial_layers),
                           "partial_layers": summary.partial_layers},
                "notes": summary.notes}
    click.echo(json.dumps(document, indent=2, ensure_ascii=True))


#: The shape of `info --format json`; a change to it bumps this.
JSON_VERSION = 1
FORMATS = {"text": _print_text, "json": _print_json}


@click.command()
@click.argument("net_path", metavar="NET")
@weights_option
@input_shape_option
@phase_option
@format_option(FORMATS)
@color_option
def command(net_path: str, weights_path: str | None, input_shapes: dict, phase: str,
            output_format: str, color: bool | None) -> None:
    """Show NET's layers: type, bottoms, tops, output shapes, parameters and MACs.

    MACs count the matrix products (Convolution, Deconvolution, InnerProduct) of
    one forward pass at batch 1 (or at the batch --input-shape gives). With --weights,
    says which layers have stored weights.
    """
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.caffe.summary import summarise
    from bnlint.files import read_text, shown_path

    text = parse_text(read_text(net_path))
    require_net(text, net_view(text), "info")
    summary = summarise(text, net_state(phase), input_shapes, check_names=check_shape_names)
    weights = None
    if weights_path:
        from bnlint.caffe.weights import read_weights

        weights = read_weights(weights_path)
    FORMATS[output_format](shown_path(net_path), summary, weights, color)
