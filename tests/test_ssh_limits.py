"""Connection bounds, login timeout, refused forwarding and refused commands."""

from __future__ import annotations

import asyncio
import collections
import functools
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from asyncssh.constants import MSG_GLOBAL_REQUEST
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    Vitals,
    assert_back_to_normal,
    require,
    start_server,
    stop_server,
    write_config,
)

PIDS: dict[int, int] = {}  # a server's process by its SSH port


def _server_with(ssh_settings: str, tmp_path: Path, client_key: Path) -> Iterator[int]:
    """A server over an empty root with these lines added to its [ssh] table; its port."""
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "c.toml"
    pub = client_key.with_suffix(".pub").read_text().strip()
    write_config(config, root, tmp_path / "state", pub)
    config.write_text(config.read_text().replace("[ssh]\n", f"[ssh]\n{ssh_settings}"))
    process, port, _ = start_server(["--config", str(config)], tmp_path / "log")
    PIDS[port] = process.pid
    yield port
    stop_server(process)


@pytest.fixture
def tight(tmp_path: Path, client_key: Path) -> Iterator[int]:
    """A server allowing 3 connections per address, 2 unauthenticated, 2 s to log in."""
    settings = "max_connections_per_address = 3\nmax_unauthenticated = 2\nlogin_timeout = 2\n"
    yield from _server_with(settings, tmp_path, client_key)


async def _login(port: int) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        "127.0.0.1", port, username="root", password=PASSWORD, known_hosts=None, client_keys=None
    )


async def _login_and_leave(port: int) -> None:
    async with await _login(port) as conn, conn.start_sftp_client() as sftp:
        await sftp.stat("/")


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes this raw TCP connection within ``within`` seconds."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if sock.recv(4096) == b"":
                return True
    except (TimeoutError, ConnectionResetError):
        return False
    return False


def test_connections_per_address_are_capped(tight: int) -> None:
    """The 4th connection from one address is refused; closing one makes room again."""

    async def scenario() -> None:
        conns = [await _login(tight) for _ in range(3)]
        with pytest.raises((asyncssh.Error, OSError)):
            extra = await _login(tight)
            await extra.run("true")
        conns.pop().close()
        await asyncio.sleep(0.3)
        again = await _login(tight)
        async with again.start_sftp_client() as sftp:
            assert sorted(await sftp.listdir("/")) == [".", ".."]  # (an empty folder)
        again.close()
        for conn in conns:
            conn.close()

    asyncio.run(scenario())


def test_unauthenticated_connections_are_capped_and_time_out(tight: int) -> None:
    """Idle pre-auth connections are bounded in number and dropped after the login
    timeout; the server's threads and memory come back after."""
    asyncio.run(_login_and_leave(tight))
    before = Vitals.of(PIDS[tight])
    idle: list[socket.socket] = []
    for _ in range(20):  # (past a third of the slots, some are refused at random)
        sock = socket.create_connection(("127.0.0.1", tight))
        if _closed_by_server(sock, 0.3):
            sock.close()
            continue
        idle.append(sock)
        if len(idle) == 2:
            break
    assert len(idle) == 2
    third = socket.create_connection(("127.0.0.1", tight))
    assert _closed_by_server(third, 1.5), "a third unauthenticated connection was kept"
    assert all(_closed_by_server(sock, 4.0) for sock in idle), "login timeout did not apply"
    for sock in [*idle, third]:
        sock.close()
    assert_back_to_normal(PIDS[tight], before)


def test_port_forwarding_is_refused(server: Server) -> None:
    """A direct-tcpip channel (ssh -L) is refused."""

    async def scenario() -> None:
        async with asyncssh.connect(
            "127.0.0.1", server.port, username="root", client_keys=[str(server.key)],
            known_hosts=None,
        ) as conn:  # fmt: skip
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", server.port)

    asyncio.run(scenario())


def test_shell_and_commands_are_refused_with_a_message(server: Server) -> None:
    """Users without a shell get a clear refusal on stderr and exit status 1."""
    require("ssh")
    result = subprocess.run(
        ["ssh", "-p", str(server.port), *server.ssh_options(), "root@127.0.0.1", "id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not available" in result.stderr
    assert result.stdout == ""


@pytest.fixture
def probing(tmp_path: Path, client_key: Path) -> Iterator[int]:
    """A server that probes a quiet client every 0.5 s and drops it after 2 unanswered."""
    settings = "keepalive_interval = 0.5\nkeepalive_count_max = 2\n"
    yield from _server_with(settings, tmp_path, client_key)


def _count_probes(monkeypatch: pytest.MonkeyPatch, answer: bool) -> list[float]:
    """Record when the test's SSH clients get a keepalive probe; ``answer`` it or not."""
    handlers = asyncssh.connection.SSHConnection._packet_handlers
    original = handlers[MSG_GLOBAL_REQUEST]
    probes: list[float] = []

    def record(conn: object, pkttype: int, pktid: int, packet: asyncssh.packet.SSHPacket) -> None:
        if b"keepalive@openssh.com" in packet.get_full_payload():
            probes.append(time.monotonic())
            if not answer:
                return
        original(conn, pkttype, pktid, packet)

    monkeypatch.setitem(handlers, MSG_GLOBAL_REQUEST, record)
    return probes


def test_keepalive_probes_only_a_quiet_client(
    probing: int, client_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a client sends a request every 20 ms it gets no probe; once quiet, one about
    every 0.5 s, and answering them keeps it connected."""
    probes = _count_probes(monkeypatch, answer=True)

    async def scenario() -> None:
        async with asyncssh.connect(
            "127.0.0.1", probing, username="root", client_keys=[str(client_key)],
            known_hosts=None, agent_path=None,
        ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                await sftp.stat("/")
                await asyncio.sleep(0.02)
            assert probes == []
            await asyncio.sleep(2.5)
            assert 3 <= len(probes) <= 6
            await sftp.stat("/")  # still connected

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_keepalive_drops_a_client_that_does_not_answer(
    probing: int, client_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that answers no probe is disconnected after count_max + 1 intervals."""
    probes = _count_probes(monkeypatch, answer=False)

    async def scenario() -> None:
        conn = await asyncssh.connect(
            "127.0.0.1", probing, username="root", client_keys=[str(client_key)],
            known_hosts=None, agent_path=None,
        )  # fmt: skip
        start = time.monotonic()
        await asyncio.wait_for(conn.wait_closed(), 40)
        assert 1.0 <= time.monotonic() - start <= 30.0  # 3 intervals: 2 probes, then out
        assert len(probes) == 2

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.fixture
def few_fds(tmp_path: Path, client_key: Path) -> Iterator[tuple[int, Path]]:
    """A server started with 256 descriptors: 128 SFTP handles in all, 32 per user."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # inherited by the server
    try:
        runs = _server_with("", tmp_path, client_key)
        port = next(runs)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    yield port, tmp_path / "root"
    next(runs, None)


def test_sftp_handles_are_capped_per_user_across_channels(
    few_fds: tuple[int, Path], client_key: Path
) -> None:
    """One user's handles over several channels stop at the per-user share of the
    process's descriptors (each channel allows 64); another user can still open files,
    and a closed channel gives its handles back."""
    port, root = few_fds
    (root / "f.txt").write_text("x")
    (root / "home" / "jailed").mkdir(parents=True)
    (root / "home" / "jailed" / "g.txt").write_text("y")

    async def connect(user: str) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            "127.0.0.1", port, username=user, client_keys=[str(client_key)],
            known_hosts=None, agent_path=None,
        )  # fmt: skip

    async def body() -> None:
        async with await connect("root") as conn, await connect("jailed") as other:
            first, second = conn.start_sftp_client(), conn.start_sftp_client()
            channels = [await first, await second]
            held = [await channels[0].open("/f.txt") for _ in range(20)]
            held += [await channels[1].open("/f.txt") for _ in range(12)]
            with pytest.raises(asyncssh.SFTPFailure, match="for this user"):
                await channels[1].open("/f.txt")
            async with other.start_sftp_client() as theirs:
                file = await theirs.open("/g.txt")
                assert await file.read() == "y"
                await file.close()
            channels[0].exit()
            await channels[0].wait_closed()
            for _ in range(20):  # the closed channel's handles are free again
                held.append(await channels[1].open("/f.txt"))
            with pytest.raises(asyncssh.SFTPFailure, match="for this user"):
                await channels[1].open("/f.txt")

    asyncio.run(asyncio.wait_for(body(), 60))


def test_handle_budget_caps_each_user_and_the_total() -> None:
    """A user stops at the per-user cap, all users together at the total; given-back
    handles can be taken again."""
    import errno

    from hoody_mount.ssh.handle_budget import HandleBudget

    budget = HandleBudget(total=5, per_user=3)
    for _ in range(3):
        budget.take("a")
    with pytest.raises(OSError, match="for this user") as refused:
        budget.take("a")
    assert refused.value.errno == errno.EMFILE
    budget.take("b")
    budget.take("b")
    with pytest.raises(OSError, match="on the server"):
        budget.take("c")
    budget.give("a", 2)
    assert (budget.held("a"), budget.held()) == (1, 3)
    budget.take("c")
    assert budget.held("c") == 1


def test_one_address_cannot_take_every_login_slot(tmp_path: Path, client_key: Path) -> None:
    """An address holding idle pre-login connections gets at most its share of them
    (the 11th is refused at once, with a reason); another address logs in meanwhile
    (the global cap of 32 let one address refuse every login for 30 s), and the
    refusals of a flood are logged a few lines a period, not one each."""
    settings = "max_unauthenticated = 100\nmax_unauthenticated_per_address = 10\n"
    for port in _server_with(settings, tmp_path, client_key):
        held = []
        for _ in range(10):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", port))
            held.append(sock)
        time.sleep(0.3)
        flood = []
        for _ in range(60):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", port))
            flood.append(sock)
        assert all(_closed_by_server(sock, 5.0) for sock in flood[:5])

        async def honest(port: int) -> None:
            conn = await asyncio.wait_for(_login(port), 15)
            async with conn.start_sftp_client() as sftp:
                await sftp.listdir("/")
            conn.close()

        asyncio.run(honest(port))
        for sock in held + flood:
            sock.close()
        log = (tmp_path / "log").read_text()
        whole = log.count("SSH connections refused: too many connections from this address")
        assert 1 <= whole <= 5, log[-2000:]


def test_logins_are_refused_at_random_between_a_third_and_all_slots_taken() -> None:
    """As OpenSSH's MaxStartups 30:30:100: no refusal below a third of the slots, about
    30% there, rising to every one when all are taken."""
    from hoody_mount.config import SSHLimits
    from hoody_mount.ssh import server as ssh_server

    class Ctx:
        limits = SSHLimits(max_unauthenticated=100)
        connections: collections.Counter[str] = collections.Counter()
        unauthenticated_by_address: collections.Counter[str] = collections.Counter()
        unauthenticated = 0

    ctx = Ctx()

    def refused_share(unauthenticated: int) -> float:
        ctx.unauthenticated = unauthenticated
        tries = 4000
        refused = sum(
            ssh_server._refusal(ctx, "10.0.0.1") is not None  # type: ignore[arg-type]
            for _ in range(tries)
        )
        return refused / tries

    assert refused_share(29) == 0
    assert 0.25 < refused_share(30) < 0.35
    assert 0.6 < refused_share(65) < 0.7
    assert refused_share(100) == 1


def test_one_user_cannot_take_every_connection(tmp_path: Path, client_key: Path) -> None:
    """A user's logged-in connections are capped whatever addresses they come from
    (one user from 4 addresses filled all 256 and no one else got in); the connection
    past the cap is sent away with a reason, and another user still logs in."""
    settings = "max_connections_per_user = 3\n"
    for port in _server_with(settings, tmp_path, client_key):
        (tmp_path / "root" / "share").mkdir()  # (the reader's folder)

        async def scenario(port: int) -> None:
            held = []
            for address in ("127.0.0.20", "127.0.0.21", "127.0.0.22"):
                held.append(
                    await asyncssh.connect(
                        "127.0.0.1",
                        port,
                        username="root",
                        password=PASSWORD,
                        known_hosts=None,
                        client_keys=None,
                        local_addr=(address, 0),
                    )  # fmt: skip
                )
            extra = await asyncssh.connect(
                "127.0.0.1", port, username="root", password=PASSWORD,
                known_hosts=None, client_keys=None, local_addr=("127.0.0.23", 0),
            )  # fmt: skip
            with pytest.raises((asyncssh.Error, OSError)):
                async with extra.start_sftp_client() as sftp:
                    await sftp.listdir("/")
            other = await asyncssh.connect(
                "127.0.0.1", port, username="reader", password=READER_PASSWORD,
                known_hosts=None, client_keys=None,
            )  # fmt: skip
            async with other.start_sftp_client() as sftp:
                await sftp.listdir("/")
            other.close()
            for conn in held:
                conn.close()

        asyncio.run(scenario(port))
        assert "too many connections of user root" in (tmp_path / "log").read_text()


def test_openssh_shows_why_a_connection_is_refused(tight: int, tmp_path: Path) -> None:
    """A connection refused at once gets the server's version line first, then the
    disconnect: OpenSSH prints the reason (it printed "banner line contains invalid
    characters" when the disconnect came before the version line)."""
    require("ssh")

    async def scenario() -> None:
        conns = [await _login(tight) for _ in range(3)]
        loop = asyncio.get_running_loop()
        refused = await loop.run_in_executor(None, functools.partial(
            subprocess.run,
            ["ssh", "-p", str(tight), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", f"UserKnownHostsFile={tmp_path / 'known'}", "root@127.0.0.1", "true"],
            capture_output=True, text=True, timeout=30,
        ))  # fmt: skip
        for conn in conns:
            conn.close()
        assert refused.returncode != 0
        assert "Received disconnect" in refused.stderr, refused.stderr
        assert "too many connections from this address" in refused.stderr, refused.stderr

    asyncio.run(scenario())
