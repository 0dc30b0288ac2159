"""The sans-IO core's vocabulary: what happens (events) and what to do (commands).

Every event names the connection it came from and every command the
connection it acts on (``Conn``: the client, or one of the server
connections a layer opened). Protocol layers take events and answer with
commands; the asyncio shell (``proxy.server``) only carries commands out and
feeds what happened back. Nothing here imports asyncio, the shell or the sinks.
"""
