"""Lossless protobuf text format: tokens keep their trivia, nodes render back exactly."""

from bnlint.syntax.nodes import Document, Field, ListValue, Message, Scalar, render
from bnlint.syntax.parser import parse, parse_source

__all__ = ["Document", "Field", "ListValue", "Message", "Scalar", "parse", "parse_source",
           "render"]
