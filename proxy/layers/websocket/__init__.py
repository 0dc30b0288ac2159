"""WebSocket after a ``101``: frames both ways, messages, records and rules.

``frames`` reads and writes RFC 6455 frames (wsproto's codec), ``deflate``
is permessage-deflate (RFC 7692) with capped inflation, ``direction`` turns
one side's frames into messages, and ``layer`` is the sans-IO layer that
``proxy.layers.root`` builds in place of the byte tunnel for a WebSocket
upgrade. The message rules are ``proxy.rules.wsrules``.
"""
