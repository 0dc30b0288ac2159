"""nginx configurations for tests: one process in the foreground, all its files under a temp dir."""

from __future__ import annotations

from pathlib import Path


def nginx_conf(tmp: Path, http: str, mime: bool = False) -> str:
    """A whole nginx.conf: pid, logs and temp paths under ``tmp``, then ``http``
    (server blocks and http-level directives) inside ``http {}``; ``mime``:
    Debian's MIME types, for a browser that looks at Content-Type."""
    types = "    include /etc/nginx/mime.types;\n" if mime else ""
    return f"""\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
{types}    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{http}}}
"""
