"""The web UI and its admin API (``tapproxy --web``, docs/api.md).

Served by aiohttp from the proxy's own event loop. Flows live in a bounded
SQLite store (``store``), filled by a dispatcher sink (``storesink``) off
the data path: a finished flow is appended to a spool (``storewait``) and
indexed into SQLite only when someone looks (``indexing``: a browser
watching, an API request), so a UI nobody looks at costs almost nothing.
``metrics`` keeps the Prometheus counters of ``/metrics``.
"""
