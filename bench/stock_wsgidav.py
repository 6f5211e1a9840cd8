"""Stock WsgiDAV anchor: its FilesystemProvider on cheroot, as the ``wsgidav`` CLI runs it.

Usage: ``python bench/stock_wsgidav.py ROOT USER PASSWORD``. Binds 127.0.0.1 on a free port,
prints ``WsgiDAV listening on 127.0.0.1:PORT`` and serves until SIGTERM. Basic
authentication against one ``simple_dc`` user (the same scheme hoody-mount uses), 50 cheroot
threads like the CLI, request logging off.
"""

from __future__ import annotations

import sys

from cheroot_run import serve
from wsgidav.fs_dav_provider import FilesystemProvider
from wsgidav.wsgidav_app import WsgiDAVApp


def main(argv: list[str]) -> None:
    """Serve ``ROOT`` until SIGTERM."""
    root, user, password = argv
    config = {
        "host": "127.0.0.1",
        "port": 0,
        "provider_mapping": {"/": FilesystemProvider(root)},
        "http_authenticator": {
            "domain_controller": None,  # SimpleDomainController
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "verbose": 1,
        "logging": {"enable": False},
    }
    serve(WsgiDAVApp(config), "WsgiDAV")


if __name__ == "__main__":
    main(sys.argv[1:])
