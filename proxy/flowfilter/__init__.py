"""The filter language: one implementation for the web UI, the admin API and
the command line (``--view-filter``), documented in docs/filters.md.

Close to mitmproxy's filter expressions so habits carry over::

    ~d example.com & ~m POST & !~c 200
    ~websocket | ~grpc
    "api/v[12]" ~bs '"error"'

``parse(text)`` gives a ``Filter`` (or raises ``FilterError`` with the
1-based ``column``); ``Filter.matches(subject)`` evaluates it against a
``Subject``, built from a flow-log JSON record (``json_subject``), a
``FlowRecord`` (``record_subject``) or a flow held at a hook
(``live_subject``). ``Filter.needs_bodies`` tells callers whether bodies
must be read at all; ``str(filter)`` is its canonical text.

The modules: ``lexer`` (tokens, quoting), ``parser`` (precedence, errors),
``nodes`` (the tree and its canonical text), ``operators`` (the table of
filters), ``evaluate`` (trees to predicates), ``bodies`` (decoded, capped
bodies), ``subject`` (the protocol) and one adapter module per source.
"""

from proxy.flowfilter.errors import FilterError
from proxy.flowfilter.filter import Filter, parse
from proxy.flowfilter.jsonsubject import json_subject
from proxy.flowfilter.livesubject import live_subject
from proxy.flowfilter.recordsubject import record_subject
from proxy.flowfilter.subject import Kind, Subject

__all__ = [
    "Filter",
    "FilterError",
    "Kind",
    "Subject",
    "json_subject",
    "live_subject",
    "parse",
    "record_subject",
]
