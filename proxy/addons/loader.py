"""Loading an addon script, and loading it again when it changes.

An addon is a Python file. Its hooks are module-level functions named after
the hook (``request``, ``response``, ``error``, ``done``, ``save``,
``websocket_message``, ``grpc_message``, ``tcp_message``), or methods of the
objects in a module-level ``addons`` list (mitmproxy's style); each may be
``async``. A file that cannot be loaded at start is an error; one that
breaks later (a reload with a syntax error) keeps its last good version and
says why, once per change.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

#: Every hook an addon may define (docs/addons.md).
HOOKS = (
    "request",
    "response",
    "error",
    "done",
    "save",
    "websocket_message",
    "grpc_message",
    "tcp_message",
)


class AddonError(Exception):
    """An addon that cannot be loaded at start."""


def _load(path: Path, generation: int) -> ModuleType:
    name = f"tapproxy_addon_{path.stem}_{generation}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hooks(module: ModuleType) -> dict[str, list[Callable[..., Any]]]:
    found: dict[str, list[Callable[..., Any]]] = {h: [] for h in HOOKS}
    for obj in [module, *getattr(module, "addons", [])]:
        for hook in HOOKS:
            fn = getattr(obj, hook, None)
            if callable(fn):
                found[hook].append(fn)
    return found


class Script:
    """One addon file, its hooks, and whether it changed on disk."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.generation = 0
        try:
            self.mtime = os.stat(self.path).st_mtime_ns
            self.module = _load(self.path, 0)
        except Exception as e:
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            raise AddonError(f"cannot load addon {path}: {detail}") from e
        self.hooks = _hooks(self.module)

    def wants(self, hook: str) -> bool:
        return bool(self.hooks[hook])

    def reload_if_changed(self) -> bool:
        """Load the file again if it changed; True when the hooks are new."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return False  # gone for now (an editor's save): keep what we have
        if mtime == self.mtime:
            return False
        self.mtime = mtime
        self.generation += 1
        try:
            module = _load(self.path, self.generation)
        except Exception:
            print(
                f"tapproxy: addon {self.path} changed but cannot be loaded; keeping the last "
                f"good version:\n{traceback.format_exc()}",
                file=sys.stderr,
                flush=True,
            )
            return False
        self.module = module
        self.hooks = _hooks(module)
        print(f"tapproxy: addon {self.path} reloaded", file=sys.stderr, flush=True)
        return True
