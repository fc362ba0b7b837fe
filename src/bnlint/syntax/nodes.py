"""The lossless syntax tree: nodes that own tokens and render by concatenation.

Nothing here knows Caffe or the protobuf library. A node's text is the prefix and
text of each of its tokens in order, so rendering the document gives back the
exact input. Walks are iterative: a net nested 10,000 deep must not hit Python's
recursion limit.
"""

from __future__ import annotations

from typing import Iterator, Union

from bnlint.syntax.lexer import Token


class Scalar:
    """A scalar value: one token, adjacent string tokens, or `-` and a number."""

    __slots__ = ("tokens",)

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens

    @property
    def kind(self) -> str:
        return self.tokens[-1].kind

    @property
    def text(self) -> str:
        """The value's source text without trivia (strings still quoted)."""
        if len(self.tokens) == 1:
            return self.tokens[0].text
        return "".join(t.text for t in self.tokens) if self.tokens[0].text == "-" else \
            " ".join(t.text for t in self.tokens)

    @property
    def start(self) -> int:
        return self.tokens[0].offset

    @property
    def end(self) -> int:
        return self.tokens[-1].end

    def __repr__(self) -> str:
        return f"Scalar({self.text})"


class Message:
    """`{ fields }` or `< fields >`."""

    __slots__ = ("open", "fields", "close")

    def __init__(self, open: Token, fields: list["Field"], close: Token | None = None) -> None:
        self.open = open
        self.fields = fields
        self.close = close

    @property
    def start(self) -> int:
        return self.open.offset

    @property
    def end(self) -> int:
        return self.close.end if self.close is not None else self.open.end

    def get(self, name: str) -> "Field | None":
        """The last field of that name (protobuf's rule for a repeated optional)."""
        for f in reversed(self.fields):
            if f.name == name:
                return f
        return None

    def get_all(self, name: str) -> list["Field"]:
        return [f for f in self.fields if f.name == name]

    def __repr__(self) -> str:
        return f"Message({len(self.fields)} fields)"


class ListValue:
    """`[a, b, c]`: the short form of a repeated field; items are Scalars or Messages."""

    __slots__ = ("open", "items", "commas", "close")

    def __init__(self, open: Token, items: list["Value"], commas: list[Token],
                 close: Token | None = None) -> None:
        self.open = open
        self.items = items
        self.commas = commas
        self.close = close

    @property
    def start(self) -> int:
        return self.open.offset

    @property
    def end(self) -> int:
        return self.close.end if self.close is not None else self.open.end


Value = Union[Scalar, Message, ListValue]


class Field:
    """`name [:] value [, or ;]`."""

    __slots__ = ("name_token", "name", "colon", "value", "separator")

    def __init__(self, name_token: Token, colon: Token | None, value: Value | None = None,
                 separator: Token | None = None) -> None:
        self.name_token = name_token
        self.name = name_token.text   # read constantly by lookups; tokens never change
        self.colon = colon
        self.value = value
        self.separator = separator

    @property
    def start(self) -> int:
        return self.name_token.offset

    @property
    def end(self) -> int:
        if self.separator is not None:
            return self.separator.end
        return self.value.end if self.value is not None else self.name_token.end

    @property
    def is_message(self) -> bool:
        return isinstance(self.value, Message)

    def __repr__(self) -> str:
        return f"Field({self.name}: {self.value!r})"


class Document:
    """A whole file: top-level fields, then the EOF token holding the trailing trivia."""

    __slots__ = ("fields", "eof")

    def __init__(self, fields: list[Field], eof: Token) -> None:
        self.fields = fields
        self.eof = eof

    get = Message.get
    get_all = Message.get_all


Node = Union[Document, Field, Message, ListValue, Scalar]


def iter_tokens(node: Node) -> Iterator[Token]:
    """Every token under a node in source order, without recursion."""
    stack: list[object] = [node]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if isinstance(item, Token):
            yield item
        elif isinstance(item, Field):
            if item.separator is not None:
                push(item.separator)
            if item.value is not None:
                push(item.value)
            if item.colon is not None:
                push(item.colon)
            push(item.name_token)
        elif isinstance(item, Scalar):
            yield from item.tokens
        elif isinstance(item, Message):
            if item.close is not None:
                push(item.close)
            stack.extend(reversed(item.fields))
            push(item.open)
        elif isinstance(item, ListValue):
            if item.close is not None:
                push(item.close)
            # items and commas interleave: item, comma, item, comma, ..., item
            seq: list[object] = []
            for i, it in enumerate(item.items):
                seq.append(it)
                if i < len(item.commas):
                    seq.append(item.commas[i])
            stack.extend(reversed(seq))
            push(item.open)
        elif isinstance(item, Document):
            push(item.eof)
            stack.extend(reversed(item.fields))


def render(node: Node) -> str:
    """The exact source text of a node (a Document renders to the whole file)."""
    parts: list[str] = []
    append = parts.append
    for tok in iter_tokens(node):
        append(tok.prefix)
        append(tok.text)
    return "".join(parts)


def walk_fields(node: Document | Message) -> Iterator[tuple[Field, tuple[Field, ...]]]:
    """Every field under a node, with the chain of enclosing message fields."""
    stack: list[tuple[Field, tuple[Field, ...]]] = [(f, ()) for f in reversed(node.fields)]
    while stack:
        field, parents = stack.pop()
        yield field, parents
        children = _child_messages(field)
        if children:
            chain = parents + (field,)
            for msg in reversed(children):
                stack.extend((f, chain) for f in reversed(msg.fields))


def _child_messages(field: Field) -> list[Message]:
    value = field.value
    if isinstance(value, Message):
        return [value]
    if isinstance(value, ListValue):
        return [v for v in value.items if isinstance(v, Message)]
    return []
