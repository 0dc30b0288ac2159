"""The web UI and its admin API (``tapproxy --web``, docs/api.md).

Served by aiohttp from the proxy's own event loop. Flows live in a bounded
SQLite store (``store``), filled by a dispatcher sink (``storesink``) off
the data path; ``metrics`` keeps the Prometheus counters of ``/metrics``.
"""
