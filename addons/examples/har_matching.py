"""Write only the flows whose URL matches a pattern to a HAR file of their own.

The HAR stays valid after every flow (the ``--har`` writer). The file and
the pattern (a regular expression searched in the URL) come from
``TAPPROXY_HAR_PATH`` (default ``matching.har``) and ``TAPPROXY_HAR_MATCH``
(default ``/api/``). Bodies are those of the record: whole with ``--save``
or ``--capture-bodies``, else the preview (``--body-preview``).

    TAPPROXY_HAR_MATCH='/api/orders' tapproxy -s addons/examples/har_matching.py
"""

from __future__ import annotations

import os
import re

from proxy.addons.api import Flow
from proxy.sinks.har import HarSink

PATTERN = re.compile(os.environ.get("TAPPROXY_HAR_MATCH", "/api/"))
HAR = HarSink(os.environ.get("TAPPROXY_HAR_PATH", "matching.har"))


def done(flow: Flow) -> None:
    if flow.record is not None and PATTERN.search(flow.request.url):
        HAR.write_batch([flow.record])
