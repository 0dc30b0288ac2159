"""Which asyncio event loop the proxy runs on (``--loop``).

``auto`` (the default) takes uvloop when it is installed (``pip install
'tapproxy[fast]'``) and the standard loop otherwise; ``asyncio`` and
``uvloop`` force one. uvloop runs the same protocols and transports in C
(libuv), which saves part of the shell's per-read cost; docs/performance.md
has the measured difference. Nothing else in the proxy depends on the
choice: the shell only uses the asyncio protocol and transport interface.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from enum import Enum
from types import ModuleType

from proxy.config import ConfigError

__all__ = ["LoopChoice", "loop_factory", "loop_name"]

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopChoice(Enum):
    AUTO = "auto"
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


def _uvloop() -> ModuleType | None:
    """The uvloop module, or None when it is not installed (or does not import)."""
    try:
        return importlib.import_module("uvloop")
    except ImportError:
        return None


def loop_name(choice: LoopChoice) -> str:
    """``asyncio`` or ``uvloop``: the loop ``choice`` runs on here."""
    if choice is LoopChoice.AUTO:
        return "uvloop" if _uvloop() is not None else "asyncio"
    return str(choice.value)


def loop_factory(choice: LoopChoice) -> LoopFactory:
    """A new-loop factory for ``asyncio.Runner``; ConfigError when ``uvloop``
    is asked for and not installed."""
    if choice is LoopChoice.ASYNCIO:
        return asyncio.new_event_loop
    module = _uvloop()
    if module is not None:
        factory: LoopFactory = module.new_event_loop
        return factory
    if choice is LoopChoice.UVLOOP:
        raise ConfigError("--loop uvloop: uvloop is not installed (pip install 'tapproxy[fast]')")
    return asyncio.new_event_loop
