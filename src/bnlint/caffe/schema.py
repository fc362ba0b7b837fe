"""The one place bnlint gets the Caffe schema from.

Caffe has many dialects: BVLC's, and forks (SSD, SegNet, Faster R-CNN, ...) that add
fields and layers. The rest of bnlint never imports a generated `*_pb2` module; it asks
a `Schema` for message classes and descriptors by name, so a fork's schema (or a
user's `--proto my_fork.proto`) can be swapped in without touching any caller.

`default_schema()` is the bundled BVLC schema (proto/caffe.proto, generated into
`caffe_pb2`). Importing this module is cheap: protobuf and `caffe_pb2` load on first use.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor


class Schema:
    """One Caffe dialect: its message types, looked up by short name ("NetParameter").

    Wraps a protobuf FileDescriptor; message classes come from the generated module
    when there is one, otherwise they are built from the descriptors on demand.
    """

    def __init__(self, file: FileDescriptor, name: str = "caffe",
                 classes: dict[str, type] | None = None) -> None:
        self.file = file
        self.name = name            # shown to users: "bvlc", a fork's name, a .proto path
        self._classes: dict[str, type] = dict(classes or {})

    @classmethod
    def from_module(cls, module: Any, name: str) -> Schema:
        """A generated `*_pb2` module; its classes are reused, so messages interoperate."""
        file = module.DESCRIPTOR
        classes = {n: getattr(module, n) for n in file.message_types_by_name}
        return cls(file, name, classes)

    @classmethod
    def from_descriptor_set(cls, data: bytes, name: str, file_name: str | None = None) -> Schema:
        """A serialized FileDescriptorSet (what `protoc --descriptor_set_out` writes).

        It gets a private descriptor pool: a fork's caffe.proto declares the same
        `caffe.*` names as the bundled one and could not share the default pool.
        `file_name` picks the file when the set holds several (default: the last,
        which protoc writes after its imports).
        """
        from google.protobuf import descriptor_pool

        from bnlint.caffe.wireformat import Unusual, length_delimited

        try:   # FileDescriptorSet.file = 1; FileDescriptorProto.name = 1
            files = length_delimited(bytes(data), 1)
            last_name = length_delimited(files[-1], 1)[0].decode() if files else ""
        except (Unusual, IndexError, UnicodeDecodeError):
            raise ValueError(f"{name}: not a descriptor set") from None
        if not files:
            raise ValueError(f"{name}: the descriptor set holds no file")
        pool = descriptor_pool.DescriptorPool()
        for serialized in files:
            pool.AddSerializedFile(serialized)
        return cls(pool.FindFileByName(file_name or last_name), name)

    @property
    def package(self) -> str:
        return self.file.package

    def _full_name(self, name: str) -> str:
        prefix = self.package + "."
        return name if not self.package or name.startswith(prefix) else prefix + name

    def descriptor(self, name: str) -> Descriptor:
        """Descriptor of a message type: "NetParameter" or "caffe.NetParameter"."""
        try:
            return self.file.pool.FindMessageTypeByName(self._full_name(name))
        except KeyError:
            raise KeyError(f"schema {self.name!r} has no message type {name!r}") from None

    def enum_descriptor(self, name: str) -> EnumDescriptor:
        """Descriptor of an enum type: "Phase", "PoolingParameter.RoundMode"."""
        try:
            return self.file.pool.FindEnumTypeByName(self._full_name(name))
        except KeyError:
            raise KeyError(f"schema {self.name!r} has no enum type {name!r}") from None

    def message_class(self, name: str) -> type:
        """The Python class for a message type; call it for an empty message."""
        short = self.descriptor(name).full_name.removeprefix(self.package + ".")
        cls = self._classes.get(short)
        if cls is None:
            from google.protobuf import message_factory

            cls = self._classes[short] = message_factory.GetMessageClass(self.descriptor(name))
        return cls

    def message_names(self) -> list[str]:
        """Top-level message types, in declaration order."""
        return list(self.file.message_types_by_name)

    def __repr__(self) -> str:
        return f"<Schema {self.name} ({self.file.name}, package {self.package})>"


@functools.cache
def default_schema() -> Schema:
    """The bundled BVLC Caffe schema, built once on first use."""
    from bnlint.caffe import caffe_pb2

    return Schema.from_module(caffe_pb2, "bvlc")
