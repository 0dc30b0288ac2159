"""Recordings, and replaying them: the proxy answering from a recording
(server replay) and the recorded requests sent again (client replay).

``format``      the recorded flow (``RecordedFlow``) and its JSON shape
``fromrecord``  a finished ``FlowRecord`` with its captured bodies, as a recorded flow
``toflow``      a recorded flow as a ``FlowRecord`` again (console, flow log, HAR)
``writer``      ``--save``: the recording sink (gzip members of JSON Lines)
``reader``      reading recordings (up to the last complete flow), flow logs, HAR
``har_import``  HAR 1.2 entries (any tool's) as recorded flows
``match``       which recorded request a live one matches, and why not
``server``      ``--server-replay``: a REQUEST hook subscriber answering from recordings
``client``      ``tapproxy replay``: send the requests again (aiohttp)
``diff``        compare a response with the recorded one (JSON-aware)
``report``      the replay report, Markdown and JSON

See docs/replay.md for the format and the options.
"""
