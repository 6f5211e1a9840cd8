"""Every change hoody-mount makes to asyncssh, and every name asyncssh keeps private
that they use: one module per change, ``check`` proving at start that the names are
all still there.

asyncssh has no public hook for any of these (docs/design.md, "Third-party code",
says why each exists, how to test it after an upgrade, and what upstream change would
make it unnecessary). The version is pinned in ``constraints.txt``; an upgrade that
renames or removes one of the names fails at start, with one line naming asyncssh's
version and the names, instead of misbehaving under load.
"""

from __future__ import annotations

import asyncssh
from asyncssh import kex_dh, mac
from asyncssh.channel import SSHChannel, SSHServerChannel
from asyncssh.connection import SSHConnection

from ...unfit import UnfitLibrary
from . import (
    dh_groups,
    flowcontrol,
    ignore_packets,
    keyed_umac,
    lazy_keepalive,
    raw_commands,
    receive_pieces,
)

# (owner, name, what for): attributes of modules and classes
_ATTRIBUTES = (
    (kex_dh, "_dh_gex_groups", "dh_groups"),
    (getattr(kex_dh, "_KexDHGex", None), "_packet_handlers", "dh_groups"),
    (SSHChannel, "_deliver_data", "flowcontrol"),
    (mac, "_umac_available", "keyed_umac"),
    (mac, "_mac_handler", "keyed_umac"),
    (SSHConnection, "_reset_keepalive_timer", "lazy_keepalive"),
    (SSHServerChannel, "_process_exec_request", "raw_commands"),
    (SSHServerChannel, "_start_session", "raw_commands"),
    (SSHConnection, "_send_disconnect", "reason_first"),
)
# (class, instance attribute, what for): set in the class's __init__
_INSTANCE_ATTRIBUTES = (
    (SSHChannel, "_recv_buf", "flowcontrol"),
    (SSHChannel, "_recv_window", "flowcontrol"),
    (SSHChannel, "_init_recv_window", "flowcontrol"),
    (SSHConnection, "_transport", "receive_pieces"),
    (SSHConnection, "_keepalive_timer", "lazy_keepalive"),
    (SSHConnection, "_keepalive_interval", "lazy_keepalive"),
    (SSHConnection, "_loop", "lazy_keepalive"),
)


def check() -> None:
    """UnfitLibrary unless asyncssh still has every name the patches use."""
    missing = [
        f"{getattr(owner, '__name__', owner)}.{name} ({use})"
        for owner, name, use in _ATTRIBUTES
        if owner is None or not hasattr(owner, name)
    ]
    missing += [
        f"{cls.__name__}().{name} ({use})"
        for cls, name, use in _INSTANCE_ATTRIBUTES
        if name not in cls.__init__.__code__.co_names
    ]
    if getattr(mac, "_umac_available", False):  # (asyncssh found nettle's UMAC)
        from asyncssh.crypto import umac

        if not hasattr(umac, "_nettle_lib"):
            missing.append("asyncssh.crypto.umac._nettle_lib (keyed_umac)")
    if missing:
        raise UnfitLibrary(
            f"asyncssh {asyncssh.__version__} does not fit hoody-mount (constraints.txt "
            f"pins the version it was built for): missing {', '.join(missing)}"
        )


def install(ciphers: list[str]) -> None:
    """Check, then apply every change (idempotent)."""
    check()
    flowcontrol.install()
    receive_pieces.install()
    keyed_umac.install()
    lazy_keepalive.install()
    raw_commands.install()
    ignore_packets.install(ciphers)
    dh_groups.install()
