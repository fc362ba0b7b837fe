"""One way to load a net: its text parsed, its weights read in its dialect.

Every command that runs or rewrites a net reads it here. `load_net` reads a net file
(kind and dialect detected, or the dialect given), refuses it when the schema does
not fully understand it and the caller computes with it (`refusal`: a fork field
such as `ceil_mode` would be dropped and the forward would silently differ), and
reads its .caffemodel in the net's dialect (a fork's BlobProto may carry fields
BVLC's lacks). `reparse` parses a rewrite's new text as the file it came from.

NumPy is imported only when weights are read: `bnlint check` imports this module's
neighbours and must stay free of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from bnlint.caffe.dialects import AUTO, Dialect
from bnlint.caffe.load import TextFile, parse_text
from bnlint.caffe.net import NetView, net_view
from bnlint.errors import SchemaError
from bnlint.source import SourceFile

#: What `load_net` says by default of a net it refuses (`forward`, `fold`'s check).
REFUSES_TO_RUN = "refuses to run this net"


@dataclass
class NetFile:
    """A net file read: the parsed text, its view and, when asked, its weights."""

    path: str                       # as given ("-" for stdin; the text says "<stdin>")
    text: TextFile
    view: NetView
    weights: Mapping[str, Sequence] | None = None

    @property
    def source(self) -> SourceFile:
        return self.text.source

    @property
    def dialect(self) -> Dialect | None:
        """The fork dialect the net was read in, if any."""
        return getattr(self.text, "dialect", None)

    def read_weights(self, path: str):
        """A .caffemodel read in this net's dialect (a fork's BlobProto may carry more fields)."""
        return read_net_weights(self.text, path)


def load_net(path: str, weights: str | None = None, *, dialect: str | Dialect = AUTO,
             text: TextFile | None = None, refusal: str | None = REFUSES_TO_RUN) -> NetFile:
    """Read a net file and, with `weights`, its .caffemodel in the net's dialect.

    `text`: the file already parsed, so it is not read twice. `refusal` (what bnlint
    does not do with such a net) refuses a net with schema problems; None keeps them
    (a text rewrite keeps fork fields byte for byte).
    """
    if text is None:
        from bnlint.files import read_text

        text = parse_text(read_text(path), dialect=dialect)
    if refusal is not None:
        refuse_schema_problems(text, refusal)
    arrays = None
    if weights is not None:
        arrays = read_net_weights(text, weights)
    return NetFile(path, text, net_view(text), arrays)


def read_net_weights(text: TextFile, path: str):
    """A .caffemodel read in the dialect of the net `text` (None: BVLC's)."""
    from bnlint.caffe.weights import read_weights

    dialect = getattr(text, "dialect", None)
    return read_weights(path, dialect.schema() if dialect else None)


def refuse_schema_problems(text: TextFile, refusal: str) -> None:
    """SchemaError at the first problem: the forward would ignore what the schema lacks."""
    if text.problems:
        first = text.problems[0]
        more = f" (and {len(text.problems) - 1} more)" if len(text.problems) > 1 else ""
        raise SchemaError(f"{first.message}{more}; the forward would ignore it, so bnlint "
                          f"{refusal}", source=text.source, offset=first.start)


def reparse(text_file: TextFile, text: str, dialect: Dialect | None = None) -> TextFile:
    """New text of a file, parsed as the original was: same kind, same dialect (or
    `dialect`, the one a rewrite wrote it in).

    Detecting the dialect again could pick another schema once a rewrite removed
    the fork fields that decided it, and messages of two schemas do not compare.
    """
    dialect = dialect if dialect is not None else getattr(text_file, "dialect", None)
    extra = {"dialect": dialect} if dialect is not None else {}
    return parse_text(SourceFile(text_file.path, text), kind=text_file.kind, **extra)
