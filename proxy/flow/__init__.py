"""The flow model: what the proxy saw, independent of where it is written.

``record``   the frozen record of one flow (HTTP exchange, tunnel, TCP relay)
             with its request and response, TLS facts, timings and error.
``jsonview`` a record as the flow log's JSON object (HAR entries build on it).

The sans-IO core builds records; the sinks (``proxy.sinks``), ``tapproxy
analyze`` and ``convert`` only read them. Nothing here imports the core or
the sinks.
"""
