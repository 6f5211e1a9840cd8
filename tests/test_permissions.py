"""The one permission table: every operation has a right, every front asks it, and the
protocols a user may use are refused with the same reason over each front."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    basic_request,
    password_hash,
    require,
    served,
)

from hoody_mount.core import permissions
from hoody_mount.core.permissions import Right
from hoody_mount.core.users import User
from hoody_mount.dav.gate import OPERATIONS as DAV_OPERATIONS

PACKAGE = Path(permissions.__file__).resolve().parent.parent


def _checked_operations() -> set[str]:
    """The operations the code asks about: ``check("op", …)``, ``may("op")``,
    ``refusal(…, "op")`` and the like, anywhere in the package."""
    asked = {"may", "check", "refusal"}
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr not in asked:
                continue
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(arg.value)
    return found


def test_every_operation_asked_about_is_in_the_table() -> None:
    """No decision names an operation the table lacks (it would raise KeyError at run
    time), and WebDAV's methods map onto operations of the table."""
    asked = _checked_operations()
    assert {"upload", "mkdir", "shell", "forward-port"} <= asked, asked
    assert asked <= set(permissions.OPERATIONS), asked - set(permissions.OPERATIONS)
    assert set(DAV_OPERATIONS.values()) <= set(permissions.OPERATIONS)


def test_rights_follow_the_user() -> None:
    """Reading is everyone's; writing needs access "rw"; shells and forwarding need
    their own settings; a read-only token takes the right to write."""
    writer = User(name="w")
    reader = User(name="r", access="ro")
    admin = User(name="a", shell=True, port_forwarding=True)
    for op, right in permissions.OPERATIONS.items():
        assert permissions.may(reader, op) == (right is Right.READ), op
        assert permissions.may(admin, op), op
        assert permissions.may(writer, op) == (right in (Right.READ, Right.WRITE)), op
    assert permissions.refusal(reader, "lock") == "read-only access"
    assert permissions.refusal(writer, "shell") == "no shell for w"
    assert permissions.refusal(writer, "read") is None
    no_ssh = User(name="f", port_forwarding=True, protocols=frozenset({"webdav"}))
    assert not permissions.may(no_ssh, "forward-port")  # (forwarding is part of ssh)
    assert not permissions.may_write(permissions.granted(writer, read_only_token=True))
    assert permissions.granted(writer, read_only_token=False) is writer
    with pytest.raises(KeyError):
        permissions.may(writer, "no-such-operation")


@pytest.fixture
def sftp_only(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    """A server where user ``sftponly`` may use SFTP and nothing else, and ``davonly``
    WebDAV and nothing else."""
    pub = client_key.with_suffix(".pub").read_text().strip()
    users = (
        f'\n[users.sftponly]\npassword_hash = "{password_hash(PASSWORD)}"\n'
        f'authorized_keys = ["{pub}"]\nroot = "/share"\nprotocols = ["sftp"]\n'
        f'\n[users.davonly]\npassword_hash = "{password_hash(PASSWORD)}"\n'
        'root = "/share"\nprotocols = ["webdav"]\n'
    )
    with served(tmp_path, client_key, users) as running:
        yield running


def test_a_protocol_a_user_may_not_use_is_refused_with_the_reason(sftp_only: Server) -> None:
    """A user allowed SFTP alone lists files over SFTP; WebDAV, the file API, scp and
    ssh commands are refused, each saying which protocol is not allowed."""
    require("ssh", "scp")
    listing = sftp_only.sftp_batch("ls /docs\n", user="sftponly")
    assert listing.returncode == 0 and "readme.txt" in listing.stdout, listing.stderr
    for path, protocol in (("/dav/docs/", "webdav"), ("/api/v1/files/docs/", "http")):
        status, body = basic_request(sftp_only.http_port, "GET", path, "sftponly", PASSWORD)
        assert status == 403, body
        assert f"{protocol} is not allowed for sftponly".encode() in body, body
    target = "sftponly@127.0.0.1:/docs/readme.txt"
    scp = subprocess.run(
        ["scp", "-O", "-P", str(sftp_only.port), *sftp_only.ssh_options(), target, "/dev/null"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert scp.returncode != 0
    assert "scp is not allowed for sftponly" in scp.stderr, scp.stderr
    ssh = subprocess.run(
        ["ssh", "-p", str(sftp_only.port), *sftp_only.ssh_options(), "sftponly@127.0.0.1",
         "ls"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ssh.returncode != 0
    assert "ssh is not allowed for sftponly" in ssh.stderr, ssh.stderr


@pytest.mark.parametrize("method", ["LOCK", "PROPPATCH", "PUT", "MKCOL", "DELETE"])
def test_webdav_writes_of_a_reader_are_refused_by_the_table(server: Server, method: str) -> None:
    """LOCK and PROPPATCH, which change no file, need the right to write as PUT does:
    a read-only user gets 403 with the table's reason, and no lock or property is kept."""
    bodies = {
        "LOCK": b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
        b"</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>",
        "PROPPATCH": b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
        b"<D:set><D:prop><Z:note>x</Z:note></D:prop></D:set></D:propertyupdate>",
    }
    status, body = basic_request(
        server.http_port, method, "/dav/docs/readme.txt", "reader", READER_PASSWORD,
        bodies.get(method, b""), **{"Content-Type": "application/xml"},
    )  # fmt: skip
    assert status == 403, body
    assert body == b"read-only access\n"
    assert (server.root / "share" / "docs" / "readme.txt").read_text() == "shared text\n"
    status, body = basic_request(
        server.http_port, "PROPFIND", "/dav/docs/readme.txt", "reader", READER_PASSWORD,
        Depth="0",
    )  # fmt: skip
    assert status == 207, body
    assert b"urn:z" not in body and b"activelock" not in body, body


def test_a_webdav_only_user_opening_a_folder_in_a_browser_is_told_why(
    sftp_only: Server,
) -> None:
    """A folder's page belongs to the file API: a user allowed WebDAV alone is not sent
    there (to a 403), but told to use a WebDAV client; files still download."""
    port = sftp_only.http_port
    status, body = basic_request(port, "GET", "/dav/docs/", "davonly", PASSWORD)
    assert status == 403, body
    assert b"open the folder with a WebDAV client" in body
    status, body = basic_request(port, "GET", "/dav/docs/readme.txt", "davonly", PASSWORD)
    assert (status, body) == (200, b"shared text\n")
    status, _ = basic_request(port, "GET", "/dav/share/docs/", "root", PASSWORD)
    assert status == 303
