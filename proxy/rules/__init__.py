"""The YAML rule engine: pure code the session and the CLI call.

Typical use by the session::

    rules = load_rules([Path("rules/dev.yaml")])          # RulesError on mistakes
    plan = rules.on_request(info)                         # info: RequestInfo
    if plan.needs_body:                                   # buffer up to --max-body
        plan = rules.complete_request(plan, body_or_None) # b"" for a request without body
    head = plan.apply_head()                              # method, URL, fields
    new = plan.apply_body(body, head.fields)              # decoded, edited, re-encoded
    ...
    rplan = rules.on_response(plan, status, fields)       # same pattern
    tcp = rules.tcp_for(host, port, mode)                 # TCP toxics, sans-IO

See ``docs/rules.md`` for the file format and semantics.
"""

from proxy.rules.bodyedit import BodyResult
from proxy.rules.engine import RuleSet, TcpPlan
from proxy.rules.errors import RuleError, RulesError
from proxy.rules.facts import RequestInfo
from proxy.rules.loader import SourceText, expand, load_rules, load_sources
from proxy.rules.plans import (
    CloseConnection,
    EditedRequest,
    EditedResponse,
    Faults,
    LogDirective,
    MapRemote,
    RequestPlan,
    Respond,
    ResponsePlan,
    RuleHit,
    Terminal,
)
from proxy.rules.tcp import Close, Instruction, Reset, Send, Shutdown, Transformer, Wake
from proxy.rules.watcher import Reload, RulesWatcher

__all__ = [
    "BodyResult",
    "Close",
    "CloseConnection",
    "EditedRequest",
    "EditedResponse",
    "Faults",
    "Instruction",
    "LogDirective",
    "MapRemote",
    "Reload",
    "RequestInfo",
    "RequestPlan",
    "Reset",
    "Respond",
    "ResponsePlan",
    "RuleError",
    "RuleHit",
    "RuleSet",
    "RulesError",
    "RulesWatcher",
    "Send",
    "Shutdown",
    "SourceText",
    "TcpPlan",
    "Terminal",
    "Transformer",
    "Wake",
    "expand",
    "load_rules",
    "load_sources",
]
