"""The points in a flow's life that subscribers can watch (and later hold).

Sinks subscribe to ``DONE``; a live view subscribes to all of them. A hook
that may be held (a breakpoint, an addon, server replay) pauses its flow
until the subscriber resumes it, with edits or an answer.
"""

from __future__ import annotations

from enum import Enum


class HookKind(Enum):
    STARTED = "started"  # a request head arrived (HTTP) or a tunnel began
    REQUEST = "request"  # the request is complete and about to go upstream
    RESPONSE_HEAD = "response_head"
    RESPONSE = "response"  # the response is complete and about to go to the client
    ERROR = "error"
    DONE = "done"  # the flow ended: its record is final
