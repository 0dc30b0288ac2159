"""``--proto-path``: .proto files (compiled with grpcio-tools' protoc) or a
FileDescriptorSet (``.desc``/``.pb``), into a ``SchemaRegistry``.

A folder is searched for ``*.proto`` (and descriptor sets); the folder is
the import root, beside grpcio-tools' own copies of the well-known types
(``google/protobuf/*.proto``). protoc writes the set with
``--include_imports``, so the pool gets every file in dependency order.
Runs once at start-up, before any connection.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

from proxy.grpc.schema import SchemaError, SchemaRegistry

DESCRIPTOR_SUFFIXES = (".desc", ".pb", ".protoset", ".binpb")


def load(paths: list[str], registry: SchemaRegistry | None = None) -> SchemaRegistry:
    """Every schema under ``paths``; raises ``SchemaError`` with protoc's words."""
    registry = registry if registry is not None else SchemaRegistry()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SchemaError(f"--proto-path {raw}: no such file or folder")
        if path.is_dir():
            protos = sorted(p for p in path.rglob("*.proto") if p.is_file())
            sets = sorted(p for p in path.rglob("*") if p.suffix in DESCRIPTOR_SUFFIXES)
            for s in sets:
                registry.add_set(s.read_bytes())
            if protos:
                registry.add_set(compile_protos(path, protos))
            if not protos and not sets:
                raise SchemaError(f"--proto-path {raw}: no .proto or descriptor set in it")
        elif path.suffix == ".proto":
            registry.add_set(compile_protos(path.parent, [path]))
        else:
            registry.add_set(path.read_bytes())
    return registry


def compile_protos(root: Path, protos: list[Path]) -> bytes:
    """A FileDescriptorSet of ``protos`` (relative to the import root ``root``)."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        raise SchemaError(
            "compiling .proto files needs grpcio-tools (pip install grpcio-tools), "
            "or give a descriptor set (protoc --include_imports --descriptor_set_out=api.desc)"
        ) from None
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="tapproxy-proto-") as tmp:
        out = os.path.join(tmp, "set.desc")
        args = [
            "protoc",
            f"-I{root}",
            f"-I{well_known}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *(str(p.relative_to(root)) for p in protos),
        ]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = protoc.main(args)
        if code != 0 or not os.path.exists(out):
            words = err.getvalue().strip() or f"protoc exited with {code}"
            raise SchemaError(f"cannot compile {root}: {words}")
        return Path(out).read_bytes()
