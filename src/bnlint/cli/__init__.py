"""The `bnlint` command group: a thin layer over the library, one module per command.

Commands are imported only when run, so `bnlint --help` and `bnlint check` stay
fast (no numpy). Every error ends here: BnlintError prints `path:line:col: message`
and exits 2, anything else is an internal error (exit 3), never a bare traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from bnlint import __version__
from bnlint.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, BnlintError

# name -> (module, short help). Adding a command: one module and one line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("bnlint.cli.check", "Lint prototxts: BatchNorm mistakes and nets Caffe refuses."),
    "convert": ("bnlint.cli.convert", "Convert between text, binary and JSON Caffe files."),
    "draw": ("bnlint.cli.draw", "Draw a net and its findings (SVG or HTML), or what changed between two nets."),
    "export": ("bnlint.cli.export", "Export a net with its weights to ONNX, verified against the forward."),
    "fold": ("bnlint.cli.fold", "Fold BatchNorm (and its Scale) into the layer before it, weights included."),
    "forward": ("bnlint.cli.forward", "Run a net's forward pass in NumPy, as BVLC Caffe computes it."),
    "info": ("bnlint.cli.info", "Show a net's layers with shapes, parameter counts and MACs."),
    "rules": ("bnlint.cli.rules", "List the lint rules, or explain one."),
    "to-deploy": ("bnlint.cli.to_deploy", "Make the deploy net of a train/test prototxt, comments kept."),
    "verify": ("bnlint.cli.verify", "Prove that two nets compute the same thing (e.g. deploy vs train)."),
    "upgrade": ("bnlint.cli.upgrade", "Write Caffe's load-time upgrades into an old prototxt, comments kept."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bnlint")
def cli() -> None:
    """bnlint: catch Caffe's BatchNorm foot-guns before a model ships.

    Exit codes: 0 clean, 1 findings or mismatch, 2 bad input or usage,
    3 internal error.
    """


def report_error(err: BnlintError) -> None:
    click.echo(f"bnlint: {err}" if not err.location() else str(err), err=True)


def _print_undecodable_names() -> None:
    """Let stdout print file names that are not UTF-8 (surrogate escapes) as their bytes.

    Python decodes such names from argv and the file system with surrogateescape but
    writes a UTF-8 locale's stdout strictly, so one odd file name in a checked folder
    would otherwise turn the whole report into an internal error.
    """
    stream = sys.stdout
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        try:
            stream.reconfigure(errors="surrogateescape")
        except (ValueError, OSError):
            pass


def _stdout_error() -> OSError | None:
    """What writing stdout met: the flush's error, or that of a big write that went
    past the buffer and failed (`files.take_stdout_error`); None when all was written."""
    from bnlint.files import take_stdout_error

    try:
        sys.stdout.flush()
    except OSError as err:
        return err
    return take_stdout_error()


def _stdout_failed() -> OSError | None:
    """The error of writing stdout, if it cannot take what was printed (`> /dev/full`);
    a reader gone (`| head`) is no failure of ours."""
    failed = _stdout_error()
    return None if isinstance(failed, BrokenPipeError) else failed


def _flush_before_exit() -> None:
    """Before any exit: what is still buffered is written, and a failed write is
    reported as if it had happened inside the command (the reader gone: a quiet
    exit 1; a full disk: exit 2)."""
    failed = _stdout_error()
    if isinstance(failed, BrokenPipeError):
        _silence_stdout()               # `bnlint ... | head`: not an error of ours
        sys.exit(1)
    if failed is not None:
        _cannot_write_stdout(failed)


def _cannot_write_stdout(failed: OSError) -> None:
    """stdout on a full disk (`> /dev/full`), a vanished mount: what was printed is
    lost; exit 2 with the reason."""
    report_error(BnlintError(f"cannot write: {failed.strerror or failed}", path="<stdout>"))
    _silence_stdout()
    sys.exit(EXIT_BAD_INPUT)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's flush at exit has nothing to complain of."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class _warnings_as_notes:  # noqa: N801  (a context manager used like a function)
    """Warnings (NumPy's overflow in a layer's maths, ...) shown once each, after the
    command, as `bnlint: note: ...`: never as a warning about one of bnlint's source
    lines."""

    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings(record=True)
        self._caught = self._catcher.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._catcher.__exit__(*exc)
        shown = set()
        for caught in self._caught:
            text = str(caught.message)
            if text not in shown:
                shown.add(text)
                click.echo(f"bnlint: note: {text}", err=True)


def main(argv: list[str] | None = None) -> None:
    import gc

    from bnlint.files import install_whole_stdout

    # A syntax tree is millions of small objects that live until the end: Python's
    # default thresholds rescan them again and again (to-deploy of 50,000 one-line
    # layers took 6.5x the time of 10,000); bigger generations keep that linear.
    gc.set_threshold(100_000, 50, 100)
    install_whole_stdout()
    _print_undecodable_names()
    try:
        with _warnings_as_notes():
            code = cli.main(args=argv, prog_name="bnlint", standalone_mode=False)
        _flush_before_exit()
    except BnlintError as err:
        report_error(err)
        sys.exit(err.exit_code)
    except (SystemExit, click.exceptions.Exit) as exc:
        _flush_before_exit()
        if isinstance(exc, SystemExit):
            raise
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # stdout closed early (`bnlint ... | head`): not an error of ours.
        _silence_stdout()
        sys.exit(1)
    except OSError as exc:
        failed = _stdout_failed()
        if failed is None:
            _internal_error(exc)
        _cannot_write_stdout(failed)
    except MemoryError as exc:
        # a blob or weights file too big for this machine: a limit of the input, not a bug
        why = str(exc) or "the input needs more memory than is available"
        click.echo(f"bnlint: out of memory: {why}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except RecursionError:
        click.echo("bnlint: internal error: input nested too deeply for this command "
                   "(please report it)", err=True)
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        _internal_error(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _internal_error(exc: BaseException) -> None:
    if os.environ.get("BNLINT_DEBUG"):
        raise exc
    click.echo(f"bnlint: internal error: {type(exc).__name__}: {exc}\n"
               f"This is a bug in bnlint; set BNLINT_DEBUG=1 for the traceback and "
               f"please report it.", err=True)
    sys.exit(EXIT_INTERNAL)
