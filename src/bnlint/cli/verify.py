"""`bnlint verify A B`: do two nets compute the same thing? Exit 0 yes, 1 no, 2 bad input.

The library (`bnlint.forward.verify`) runs and compares; this module reads the
files, shows a progress bar on a terminal when the run takes more than a second,
and formats the report (one function per `--format`).
"""

from __future__ import annotations

import json
import sys
import time

import click

from bnlint.cli.options import PHASES, color_option, input_shape_option, stdout_console
from bnlint.errors import EXIT_CLEAN, EXIT_FINDINGS

#: Seconds a run must last before a progress bar appears (short runs stay quiet).
PROGRESS_AFTER = 1.0


def _parse_pairs(ctx, param, values: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for text in values:
        a_name, sep, b_name = text.partition("=")
        if not sep or not a_name.strip() or not b_name.strip():
            raise click.BadParameter(f"{text!r}: expected A_NAME=B_NAME", ctx=ctx, param=param)
        pairs.append((a_name.strip(), b_name.strip()))
    return pairs


class _LazyProgress:
    """A rich progress bar on stderr that only appears once the run has lasted a second."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.progress = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            if time.perf_counter() - self.started < PROGRESS_AFTER:
                return
            from rich.console import Console
            from rich.progress import Progress

            self.progress = Progress(console=Console(stderr=True), transient=True)
            self.progress.start()
            self.task = self.progress.add_task("verify", total=total)
        self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _number(value: float) -> str:
    return "-" if value != value or value in (float("inf"), float("-inf")) else f"{value:.3g}"


def render_text(report, color: bool | None = None) -> None:
    from rich.table import Table

    console = stdout_console(color)
    say = lambda text: console.print(text, highlight=False, markup=False)  # noqa: E731
    say(f"A: {report.path_a} ({report.phase_a}, {report.layers_a} layers run)")
    say(f"B: {report.path_b} (TEST, {report.layers_b} layers run)")
    inputs = ", ".join(f"{name} {'x'.join(map(str, shape))}"
                       for name, shape in report.inputs.items())
    say(f"weights: {report.weights}")
    trials = f"{report.trials} trial{'s' if report.trials != 1 else ''}"
    if report.trials_run < report.trials:
        trials = f"{report.trials_run} of {trials} (stopped at the first that differs)"
    say(f"inputs: {inputs}; {trials}, seed {report.seed}")
    say(f"tolerance: |B - A| <= {report.atol:g} + {report.rtol:g} * max|A|")
    table = Table()
    table.add_column("output (A = B)", overflow="fold")
    for column in ("max abs", "max rel"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for o in report.outputs:
        name = o.a_name if o.a_name == o.b_name else f"{o.a_name} = {o.b_name}"
        verdict = "ok" if o.ok else (f"DIFFERS ({o.problem})" if o.problem else "DIFFERS")
        table.add_row(name, _number(o.max_abs), _number(o.max_rel), verdict)
    console.print(table)
    for o in report.outputs:
        if o.note:
            say(f"note: '{o.a_name}' {o.note}")
    for note in report.notes:
        say(f"note: {note}")
    for problem in report.load_problems:
        say(f"Caffe would refuse B's weights: {problem}")
    d = report.divergence
    if d is not None:
        where = f", top '{d.blob}'" if d.blob else ""
        numbers = (f": max abs {_number(d.max_abs)}, max rel {_number(d.max_rel)}"
                   if d.blob and not d.problem else (f": {d.problem}" if d.problem else ""))
        say(f"first divergence: layer '{d.layer}' ({d.layer_type}), trial {d.trial}{where}"
            f"{numbers}")
        if d.detail:
            say(f"  {d.detail}")
        for hint in d.hints:
            say(f"  hint: {hint}")
    elif not report.equivalent:
        say("first divergence: not found among the layers both nets have by name")
    say("equivalent" if report.equivalent else "NOT equivalent")


def render_json(report, color: bool | None = None) -> None:
    click.echo(json.dumps(report.to_dict(), indent=2))


FORMATS = {"text": render_text, "json": render_json}


@click.command()
@click.argument("net_a", metavar="A")
@click.argument("net_b", metavar="B")
@click.option("--weights", "weights", metavar="W",
              help="One .caffemodel for both nets.")
@click.option("--weights-a", "weights_a", metavar="WA", help="A's .caffemodel (with --weights-b).")
@click.option("--weights-b", "weights_b", metavar="WB", help="B's .caffemodel (with --weights-a).")
@click.option("--phase-a", type=click.Choice(PHASES, case_sensitive=False), default="test",
              show_default=True, help="The phase A runs in (B runs in TEST).")
@click.option("--trials", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many batches of seeded random inputs to compare on.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the inputs and the seeded weights.")
@input_shape_option
@click.option("--output", "outputs", multiple=True, metavar="A_NAME=B_NAME",
              callback=_parse_pairs,
              help="Compare A's blob A_NAME with B's B_NAME (repeatable); default: B's "
                   "outputs, by name.")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Relative tolerance, of the reference's largest magnitude.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-5, show_default=True,
              help="Absolute tolerance.")
@click.option("--format", "output_format", type=click.Choice(sorted(FORMATS)), default="text",
              show_default=True)
@color_option
def command(net_a: str, net_b: str, weights: str | None, weights_a: str | None,
            weights_b: str | None, phase_a: str, trials: int, seed: int, input_shapes: dict,
            outputs: list[tuple[str, str]], rtol: float, atol: float,
            output_format: str, color: bool | None) -> None:
    """Prove that B (a deploy) computes what A (its train net, or another net) computes.

    Both run in NumPy on the same seeded inputs (a batch of at least 2, several
    trials). Without weights, trained-looking blobs are made for A and copied to B by
    layer name. When outputs differ, names the first layer where the nets part and,
    when the cause is a known one, says so. Exit 0 equivalent, 1 not, 2 bad input.
    """
    from bnlint.caffe.phase import Phase
    from bnlint.caffe.netfile import load_net
    from bnlint.forward.verify import CANNOT_VERIFY, VerifyOptions, verify

    if weights and (weights_a or weights_b):
        raise click.UsageError("give either --weights for both nets or --weights-a and "
                               "--weights-b, not both")
    if bool(weights_a) != bool(weights_b):
        raise click.UsageError("--weights-a and --weights-b go together (one .caffemodel "
                               "for both nets: --weights)")
    a, b = load_net(net_a, refusal=CANNOT_VERIFY), load_net(net_b, refusal=CANNOT_VERIFY)
    options = VerifyOptions(phase_a=Phase.parse(phase_a), trials=trials, seed=seed,
                            rtol=rtol, atol=atol, input_shapes=input_shapes, outputs=outputs)
    if weights:
        options.weights_a = a.read_weights(weights)
    elif weights_a:
        options.weights_a, options.weights_b = a.read_weights(weights_a), b.read_weights(weights_b)
    progress = _LazyProgress() if sys.stderr.isatty() else None
    options.progress = progress
    try:
        report = verify(a, b, options)
    finally:
        if progress is not None:
            progress.close()
    FORMATS[output_format](report, color)
    sys.exit(EXIT_CLEAN if report.equivalent else EXIT_FINDINGS)
