"""Options and helpers that several commands share, so no command module imports another.

Decorators add one option (or a group) to a click command; the helpers turn their
values into library objects. Heavy imports stay inside the helpers: `bnlint check`
imports this module too.
"""

from __future__ import annotations

import sys

import click

from bnlint.caffe.dialects import AUTO, dialect_names
from bnlint.errors import BnlintError


def dialect_options(fn):
    """--dialect and --proto, for every command that reads nets."""
    fn = click.option("--proto", "proto", type=click.Path(dir_okay=False), metavar="FILE",
                      help="Read nets with this caffe.proto: your fork's own schema "
                           "(compiled at run time; needs pip install 'bnlint[proto]').")(fn)
    fn = click.option("--dialect", type=DialectName(), metavar="|".join((AUTO,
                                                                      *dialect_names())),
                      help="The Caffe the net is for. auto (default): a fork's when "
                           "the net has fields only that fork's schema knows, else "
                           "portable; portable, bvlc and legacy use BVLC's schema; the "
                           "others are forks, which combine with + (frcnn+ceil).")(fn)
    return fn


class DialectName(click.ParamType):
    """A --dialect value: a bundled name or forks joined with + (checked, exit 2)."""

    name = "dialect"

    def convert(self, value, param, ctx):
        from bnlint.caffe.dialects import check_dialect_name

        try:
            return check_dialect_name(value)
        except BnlintError as err:
            self.fail(err.message, param, ctx)


def check_dialect_options(dialect: str | None, proto: str | None):
    """The Dialect for --proto (compiled now, so a bad schema fails before any
    file), the --dialect name, or None when neither was given."""
    if dialect and proto:
        raise click.UsageError("--dialect and --proto are mutually exclusive (a --proto "
                               "schema is the dialect)")
    if proto:
        from bnlint.caffe.dialects import load_user_proto

        return load_user_proto(proto)
    return dialect


PHASES = ("test", "train")


def parse_shape_option(ctx, param, values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """NAME=1,3,224,224 or NAME:1x3x224x224 (repeatable) into {name: shape}: the one
    grammar of every command's --input-shape (caffe.inputs.parse_shape_option)."""
    from bnlint.caffe.inputs import parse_shape_option as parse_one

    shapes: dict[str, tuple[int, ...]] = {}
    for text in values:
        try:
            name, shape = parse_one(text)
        except BnlintError as err:
            raise click.BadParameter(err.message, ctx=ctx, param=param) from None
        shapes[name] = shape
    return shapes


def weights_option(fn):
    return click.option("--weights", "weights_path", metavar="W",
                        help="Trained weights (.caffemodel); layers it lacks use their "
                             "fillers.")(fn)


def input_shape_option(fn):
    return click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=SHAPE",
                        callback=parse_shape_option,
                        help="Shape of an input blob, e.g. data=1,3,224,224 or "
                             "data:1x3x224x224 (repeatable); "
                             "needed for data layers' tops.")(fn)


def phase_option(fn):
    return click.option("--phase", type=click.Choice(PHASES, case_sensitive=False),
                        default="test", show_default=True,
                        help="The net state's phase (which layers are active, BatchNorm "
                             "statistics).")(fn)


def format_option(formats):
    """--format for the commands that print a report: text (default) or json."""
    return click.option("--format", "output_format", type=click.Choice(sorted(formats)),
                        default="text", show_default=True,
                        help="text for people, json for scripts (a versioned object).")


def net_state(phase: str):
    from bnlint.caffe.net import NetState
    from bnlint.caffe.phase import Phase

    return NetState(Phase.parse(phase))


def check_shape_names(names, shapes: dict[str, tuple[int, ...]]) -> None:
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise click.BadParameter(f"no input named {', '.join(map(repr, unknown))}; the net's "
                                 f"inputs: {', '.join(names) or 'none'}",
                                 param_hint="--input-shape")


def color_option(fn):
    """--color/--no-color, for every command that prints in colour."""
    return click.option("--color/--no-color", default=None,
                        help="Force or disable color (default: on a terminal, unless "
                             "NO_COLOR is set; FORCE_COLOR forces it).")(fn)


def stdout_console(color: bool | None = None):
    """A rich console for stdout; wide when piped, so tables do not wrap at 80 columns.
    An explicit --color wins over NO_COLOR, FORCE_COLOR and TERM=dumb."""
    import os

    from rich.console import Console

    colors = {} if color is None else {
        "force_terminal": color, "no_color": not color,
        "color_system": "standard" if color else None}
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console(**colors)
    return Console(width=160, **colors)


def require_net(text_file, view, command: str) -> None:
    """Refuse what has no net to show or run (exit 2), as to-deploy does: a solver
    that names its net in another file, or a file without layers or inputs."""
    from bnlint.errors import BnlintError

    if text_file.kind != "NetParameter" and text_file.tree.get("net_param") is None:
        raise BnlintError(f"{command} takes a net prototxt, not a solver without an embedded "
                          f"net (give the net file the solver's `net:` names)",
                          path=text_file.path)
    if not view.layers and not view.inputs:
        raise BnlintError(f"{command}: no layers and no inputs, nothing to show (an empty "
                          f"net)", path=text_file.path)
