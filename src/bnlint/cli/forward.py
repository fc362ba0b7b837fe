"""`bnlint forward`: run a net with NumPy, as BVLC Caffe would, and save its blobs.

Inputs come from .npy/.npz files or, when not given, are seeded uniform [-1, 1] of
the declared shapes; missing weights come from the net's fillers with the same seed.
The options shared with `bnlint info` (--weights, --input-shape, --phase) live here.
"""

from __future__ import annotations

import io
import sys

import click

from bnlint.cli.options import (check_shape_names, color_option, format_option, input_shape_option, net_state,
                                phase_option, stdout_console, weights_option)
from bnlint.errors import BnlintError

def load_array_file(path: str) -> dict[str, object] | object:
    """An .npy array or an .npz archive (never pickles), with bnlint's file messages."""
    import numpy as np

    from bnlint.files import read_bytes

    data = read_bytes(path)
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {name: loaded[name] for name in loaded.files}
        return loaded
    except (ValueError, OSError, EOFError) as err:
        raise BnlintError(f"not a NumPy .npy/.npz file, or one holding Python objects "
                          f"({err})", path=path) from None


def read_inputs(npz_path: str | None, named: tuple[str, ...]) -> dict[str, object]:
    """--inputs FILE.npz, then each --input NAME=FILE.npy (which wins)."""
    import numpy as np

    arrays: dict[str, object] = {}
    if npz_path:
        loaded = load_array_file(npz_path)
        if not isinstance(loaded, dict):
            raise BnlintError("--inputs needs an .npz archive of named arrays (use --input "
                              "NAME=FILE.npy for one array)", path=npz_path)
        arrays.update(loaded)
    for text in named:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{text!r}: expected NAME=FILE.npy",
                                     param_hint="--input")
        loaded = load_array_file(path)
        if isinstance(loaded, dict):
            if len(loaded) != 1:
                raise BnlintError(f"--input {name}= needs one array; this archive holds "
                                  f"{len(loaded)} (use --inputs)", path=path)
            loaded = next(iter(loaded.values()))
        arrays[name] = loaded
    for name, array in arrays.items():
        if not np.issubdtype(np.asarray(array).dtype, np.number):
            raise BnlintError(f"input '{name}' holds {np.asarray(array).dtype} values, not "
                              f"numbers")
    return arrays


def merged_input_shapes(arrays: dict[str, object],
                        shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Shapes from --input-shape and from the given arrays, which must agree."""
    import numpy as np

    merged = dict(shapes)
    for name, array in arrays.items():
        shape = tuple(np.shape(array))
        if name in merged and merged[name] != shape:
            raise click.BadParameter(f"input '{name}': --input-shape says "
                                     f"{list(merged[name])}, the array has {list(shape)}",
                                     param_hint="--input-shape")
        merged[name] = shape
    return merged


def _parse_blobs(text: str):
    if text in ("outputs", "all"):
        return text
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("expected outputs, all or NAME,NAME,...", param_hint="--blobs")
    return set(names)


def _warn(message: str) -> None:
    click.echo(f"bnlint: {message}", err=True)


def _report_weights(network, weights_path: str | None, seed: int) -> None:
    if network.filled:
        shown = ", ".join(network.filled[:5]) + (", ..." if len(network.filled) > 5 else "")
        if weights_path:
            _warn(f"warning: {len(network.filled)} layers have no weights in {weights_path}; "
                  f"filled from their fillers (seed {seed}): {shown}")
        else:
            _warn(f"note: no --weights; {len(network.filled)} layers use their fillers "
                  f"(seed {seed})")
    if weights_path and network.unused_weights:
        shown = ", ".join(network.unused_weights[:5])
        _warn(f"warning: {len(network.unused_weights)} layers with weights in {weights_path} "
              f"match no active layer and were ignored, as Caffe ignores them (renamed "
              f"layers?): {shown}{', ...' if len(network.unused_weights) > 5 else ''}")


def _run_with_progress(network, inputs, keep):
    """Run, with a progress bar on a terminal's stderr for nets big enough to wait for.
    BatchNorm chains run fused (as OpenCV's dnn runs them): equal to the exact ops
    within float32 rounding, a fifth less time on MobileNet v2 and DenseNet."""
    if not sys.stderr.isatty() or len(network.steps) < 50:
        return network.run(inputs, keep=keep, fuse=True)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("forward", total=len(network.steps))
        # the hook only counts layers and keeps no array, so in-place reuse stays on
        return network.run(inputs, keep=keep, reuse=True, fuse=True,
                           on_layer=lambda layer, tops: progress.advance(task))


BLOB_COLUMNS = ("blob", "shape", "min", "max", "mean")


def blob_rows(blobs: dict) -> list[list[str]]:
    import numpy as np

    rows = []
    for name, array in blobs.items():
        values = np.asarray(array, dtype=np.float64)
        if values.size:
            stats = [f"{values.min():.6g}", f"{values.max():.6g}", f"{values.mean():.6g}"]
        else:
            stats = ["-", "-", "-"]
        rows.append([name, "x".join(map(str, array.shape)) or "scalar", *stats])
    return rows


def blob_table(rows: list[list[str]]):
    from rich.table import Table

    table = Table()
    table.add_column("blob", overflow="fold")
    table.add_column("shape", no_wrap=True)
    for column in ("min", "max", "mean"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _print_text(net_path: str, title: str, network, blobs: dict, inputs: dict,
                color: bool | None) -> None:
    from bnlint.forward.labels import weighted_losses

    heading = f"{net_path}: {title} ({network.state})"
    rows = blob_rows(blobs)
    losses = [f"loss {top} = {value:.6g} (* {weight:g} = {value * weight:.6g} loss)"
              for top, value, weight in weighted_losses(network, blobs)]
    if _print_plain(heading, rows, losses, color):
        return
    console = stdout_console(color)
    console.print(heading, highlight=False, soft_wrap=True)
    console.print(blob_table(rows))
    for loss in losses:
        console.print(loss, highlight=False)


def _print_plain(heading: str, rows: list[list[str]], losses: list[str],
                 color: bool | None) -> bool:
    """The same characters without rich, where rich would add no colour."""
    from bnlint import plain

    width = plain.pipe_width(sys.stdout, color)
    if width is None:
        return False
    parts = [plain.line(heading, width, wrap=False),
             plain.heavy_head_table(BLOB_COLUMNS, (False, False, True, True, True), rows,
                                    width),
             *(plain.line(loss, width) for loss in losses)]
    if any(part is None for part in parts):
        return False
    sys.stdout.write("".join(parts))
    return True


def _print_json(net_path: str, title: str, network, blobs: dict, inputs: dict,
                color: bool | None) -> None:
    """Versioned like check's JSON: per blob its shape and range; a statistic over
    non-finite values is null, with the count of such values beside it."""
    import json

    import numpy as np

    def statistic(value) -> float | None:
        return float(value) if np.isfinite(value) else None

    entries = []
    for name, array in blobs.items():
        values = np.asarray(array, dtype=np.float64)
        entry = {"name": name, "shape": list(np.shape(array)), "min": None, "max": None,
                 "mean": None, "nonfinite": int(values.size - np.isfinite(values).sum())}
        if values.size:
            entry.update(min=statistic(values.min()), max=statistic(values.max()),
                         mean=statistic(values.mean()))
        entries.append(entry)
    from bnlint.forward.labels import weighted_losses

    losses = [{"top": top, "value": statistic(value), "weight": weight,
               "weighted": statistic(value * weight)}
              for top, value, weight in weighted_losses(network, blobs)]
    document = {"version": JSON_VERSION, "net": net_path, "state": str(network.state),
                "inputs": {name: list(np.shape(value)) for name, value in inputs.items()},
                "blobs": entries, "losses": losses}
    click.echo(json.dumps(document, indent=2, ensure_ascii=True))


#: The shape of `forward --format json`; a change to it bumps this.
JSON_VERSION = 1
FORMATS = {"text": _print_text, "json": _print_json}


def save_npz(path: str, blobs: dict, inputs: tuple[str, ...]) -> None:
    """np.savez into memory, then bnlint's atomic write (temporary file and rename)."""
    import numpy as np

    from bnlint.files import write_atomic

    buffer = io.BytesIO()
    np.savez(buffer, **blobs)
    write_atomic(path, buffer.getvalue(), inputs=inputs)


@click.command()
@click.argument("net_path", metavar="NET")
@weights_option
@click.option("--input", "named_inputs", multiple=True, metavar="NAME=FILE.npy",
              help="An input blob from a .npy file (repeatable).")
@click.option("--inputs", "inputs_npz", metavar="FILE.npz",
              help="Input blobs by name from an .npz archive.")
@input_shape_option
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the random inputs and the filler weights.")
@phase_option
@click.option("-o", "--output", metavar="OUT.npz", help="Save the blobs to an .npz archive.")
@click.option("--blobs", "blobs_spec", default="outputs", show_default=True,
              metavar="outputs|all|NAME,...",
              help="Which blobs to show and save: the net's outputs, every blob, or "
                   "these names.")
@format_option(FORMATS)
@color_option
def command(net_path: str, weights_path: str | None, named_inputs: tuple[str, ...],
            inputs_npz: str | None, input_shapes: dict, seed: int, phase: str,
            output: str | None, blobs_spec: str, output_format: str,
            color: bool | None) -> None:
    """Run NET's forward pass in NumPy, as BVLC Caffe computes it (float32).

    Inputs not given are seeded uniform [-1, 1] of the declared shapes. Prints the
    chosen blobs' shapes and ranges; -o saves them as an .npz archive.
    """
    import numpy as np

    from bnlint.files import shown_path
    from bnlint.forward.executor import load_network

    keep = _parse_blobs(blobs_spec)
    inputs_used = ((net_path, weights_path, inputs_npz)
                   + tuple(text.partition("=")[2] for text in named_inputs))
    if output:
        from bnlint.files import Outputs

        Outputs(inputs_used).check(output)     # before the run, not after it
    text = _read_net(net_path)
    arrays = read_inputs(inputs_npz, named_inputs)
    shapes = merged_input_shapes(arrays, input_shapes)
    network = load_network(net_path, weights_path, state=net_state(phase),
                           input_shapes=shapes, seed=seed, drop_losses=True, text=text,
                           given=arrays, wanted=keep if isinstance(keep, set) else ())
    check_shape_names(network.input_names + network.default_input_names, input_shapes)
    _report_weights(network, weights_path, seed)
    for note in network.notes:
        _warn(note)
    from bnlint.forward.seeded import seeded_inputs

    declared = network.input_shapes()
    drawn = seeded_inputs({name: shape for name, shape in declared.items()
                           if name not in arrays}, [seed, 1])
    inputs = {name: np.asarray(arrays[name], dtype=np.float32) if name in arrays
              else drawn[name] for name in declared}
    inputs.update((name, arrays[name]) for name in network.default_input_names
                  if name in arrays)
    unknown = sorted(set(arrays) - set(inputs))
    if unknown:
        raise BnlintError(f"no input named {', '.join(map(repr, unknown))} in the net; its "
                          f"inputs: {', '.join(inputs) or 'none'}", path=shown_path(net_path))
    blobs = _run_with_progress(network, inputs, keep)
    title = "outputs" if keep == "outputs" else "blobs"
    FORMATS[output_format](shown_path(net_path), title, network, blobs, inputs, color)
    if output:
        save_npz(output, blobs, inputs_used)


def _read_net(net_path: str):
    """The parsed net; a solver without its net, or an empty file, is refused before
    anything runs."""
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.cli.options import require_net
    from bnlint.files import read_text

    text = parse_text(read_text(net_path))
    require_net(text, net_view(text), "forward")
    return text
