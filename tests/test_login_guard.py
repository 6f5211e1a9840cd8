"""The login guard: failures counted per address and per (address, user), a good login
never buying more guesses, bans told to the client (429 with Retry-After over HTTP, a
disconnect with the reason over SSH), key logins during a ban, equal cost for unknown
users, and logins and logouts in the access log."""

from __future__ import annotations

import asyncio
import base64
import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from conftest import PASSWORD, READER_PASSWORD, Server, wait_until

from hoody_mount.core import users
from hoody_mount.core.guard import LoginGuard
from hoody_mount.core.users import User, hash_password
from hoody_mount.http_transport.auth import Authenticator, AuthError

# -- the guard alone ---------------------------------------------------------------------------


def test_a_good_login_never_clears_the_address_count() -> None:
    """9 guesses at root, a good login as reader, again: banned at the 10th guess."""
    guard = LoginGuard(limit=10)
    for _ in range(9):
        guard.failed("10.0.0.1", "root", "http")
    guard.succeeded("10.0.0.1", "reader")
    assert guard.allowed("10.0.0.1", "root")
    assert guard.failed("10.0.0.1", "root", "http") is not None
    ban = guard.banned("10.0.0.1", "reader")
    assert ban is not None and 1 <= ban.seconds <= 300
    assert ban.message == f"too many failed logins from 10.0.0.1, retry in {ban.seconds} s"
    assert guard.allowed("10.0.0.2", "root"), "other addresses are not concerned"


def test_a_slow_guesser_at_one_user_is_banned_for_that_user() -> None:
    """Failures that age out of the address window still count for the (address, user)
    pair; that pair is refused, other users from the address are not."""
    guard = LoginGuard(limit=3, window=0.2, user_window=60)
    guard.failed("10.0.0.1", "root", "ssh")
    guard.failed("10.0.0.1", "root", "ssh")
    time.sleep(0.3)  # the address count ages out
    ban = guard.failed("10.0.0.1", "root", "ssh")
    assert ban is not None and "as 'root' from 10.0.0.1" in ban.message
    assert guard.allowed("10.0.0.1") and guard.allowed("10.0.0.1", "reader")
    assert not guard.allowed("10.0.0.1", "root")


def test_a_good_login_clears_only_its_own_pair() -> None:
    guard = LoginGuard(limit=3, window=0.2, user_window=60)
    for _ in range(2):
        guard.failed("10.0.0.1", "root", "ssh")
        guard.failed("10.0.0.1", "reader", "ssh")
        time.sleep(0.3)  # the address count ages out
    guard.succeeded("10.0.0.1", "root")
    assert guard.failed("10.0.0.1", "root", "ssh") is None, "root's count was cleared"
    assert guard.failed("10.0.0.1", "reader", "ssh") is not None, "reader's was not"


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0


def test_unknown_users_cost_an_scrypt_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown user, or one without a password, costs one scrypt per attempt, like a
    wrong password; the same attempts at once share one check, as for a known user."""
    counter = _Counter()
    real = users._scrypt_now

    def counted(*args: Any) -> bytes:
        with counter.lock:
            counter.calls += 1
        time.sleep(0.1)  # long enough for concurrent attempts to meet
        return real(*args)

    monkeypatch.setattr(users, "_scrypt_now", counted)
    known = {"alice": User("alice", password_hash=hash_password("right")), "bob": User("bob")}
    authenticator = Authenticator(known, LoginGuard(limit=1000))

    def attempt(name: str, password: str = "guess") -> bool:
        token = base64.b64encode(f"{name}:{password}".encode()).decode()
        environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": f"Basic {token}"}
        try:
            authenticator.authenticate(environ)
            return True
        except AuthError:
            return False

    for name in ("alice", "nobody", "bob"):
        counter.calls = 0
        assert not any(attempt(name) for _ in range(3))
        assert counter.calls == 3, f"{name}: {counter.calls} scrypt checks for 3 attempts"
        counter.calls = 0
        with ThreadPoolExecutor(4) as pool:
            assert not any(pool.map(attempt, [name] * 4))
        assert counter.calls == 1, f"{name}: {counter.calls} scrypt checks for 4 at once"
    counter.calls = 0
    assert attempt("alice", "right") and attempt("alice", "right")
    assert counter.calls == 1, "a good password is checked once, then remembered"


# -- over HTTP ---------------------------------------------------------------------------------


def _get(
    server: Server, user: str, password: str, source: str = "127.0.0.1"
) -> http.client.HTTPResponse:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    connection = http.client.HTTPConnection(
        "127.0.0.1", server.http_port, timeout=60, source_address=(source, 0)
    )
    connection.request("PROPFIND", "/dav/", headers={
        "Authorization": f"Basic {token}", "Depth": "0",
    })  # fmt: skip
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_http_good_logins_buy_no_more_guesses(server: Server) -> None:
    """The bypass: 9 guesses at root, a good login as reader, repeated. The 10th guess
    bans the address; then even reader's password gets 429, Retry-After and the reason."""
    statuses = []
    for attempt in range(20):
        if attempt % 10 == 9:
            statuses.append(_get(server, "reader", READER_PASSWORD).status)
        else:
            statuses.append(_get(server, "root", f"guess-{attempt}").status)
        if statuses[-1] == 429:
            break
    assert statuses == [401] * 9 + [207] + [401] + [429], statuses
    reply = _get(server, "reader", READER_PASSWORD)
    assert reply.status == 429
    retry = int(reply.getheader("Retry-After") or "0")
    assert 1 <= retry <= 300
    assert b"too many failed logins from 127.0.0.1, retry in" in reply.body  # type: ignore[attr-defined]


def test_http_a_valid_token_passes_a_ban_and_a_wrong_one_does_not(server: Server) -> None:
    """Like an SSH key, a token is nothing to guess: during an address ban a valid one is
    served, a wrong one meets the ban (429)."""
    config = server.root.parent / "hoody-mount.toml"
    made = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "token", "create", "root", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    for attempt in range(10):
        _get(server, "root", f"guess-{attempt}")
    assert _get(server, "reader", READER_PASSWORD).status == 429

    def bearer(value: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        connection.request("GET", "/api/v1/files/", headers={"Authorization": f"Bearer {value}"})
        status = connection.getresponse().status
        connection.close()
        return status

    assert bearer(token) == 200
    assert bearer(token[:-4] + "AAAA") == 429


USERS = ("root", "nobody", "jailed")  # a wrong password, an unknown user, no password


ROUNDS = 5  # measurements, each from its own loopback address (9 failures: one short of a ban)


def _fastest(took: dict[str, list[float]]) -> tuple[float, ...]:
    """The fastest of each user's tries: the cost of the check itself, what load on a
    shared machine adds to a try left out (the tries alternate, so a busy moment falls
    on every kind alike, never on one kind's every try)."""
    return tuple(min(took[user]) for user in USERS)


def _as_costly(measure: Callable[[str], dict[str, list[float]]]) -> None:
    """Assert that an unknown user's, and a passwordless user's, failed login costs at
    least 0.6 of a wrong password's: in one of ``ROUNDS`` measurements, each made from
    its own address (the check that skipped scrypt cost a tenth or a fifth, in every
    round; a loaded machine can slow down one round's every wrong password, not all)."""
    seen = []
    for round_ in range(ROUNDS):
        wrong, unknown, no_hash = _fastest(measure(f"127.0.0.{2 + round_}"))
        if unknown > 0.6 * wrong and no_hash > 0.6 * wrong:
            return
        seen.append((wrong, unknown, no_hash))
    raise AssertionError(f"(wrong, unknown, no hash) in each round: {seen}")


def test_http_unknown_user_costs_as_much_as_a_wrong_password(server: Server) -> None:
    """Measured in one run: an unknown user, or one without a password (jailed), took a
    tenth of a wrong password's time (20 against 214 ms); now about the same."""

    def measure(source: str) -> dict[str, list[float]]:
        took: dict[str, list[float]] = {user: [] for user in USERS}
        for _ in range(3):  # (9 failures: one short of a ban)
            for user in USERS:
                start = time.perf_counter()
                assert _get(server, user, "wrong", source).status == 401
                took[user].append(time.perf_counter() - start)
        return took

    _as_costly(measure)


def test_http_logins_are_logged_when_checked(server: Server) -> None:
    """A password login is logged when scrypt checked it, not when it was remembered."""
    assert _get(server, "reader", READER_PASSWORD).status == 207
    assert _get(server, "reader", READER_PASSWORD).status == 207
    line = "login reader from 127.0.0.1 over http (password)"
    assert wait_until(lambda: line in server.log.read_text(), 5), server.log.read_text()[-2000:]
    time.sleep(0.5)  # the log is written every quarter second
    assert server.log.read_text().count(line) == 1


# -- over SSH ----------------------------------------------------------------------------------


async def _ssh(server: Server, user: str, password: str | None = None,
               key: Path | None = None, source: str = "127.0.0.1") -> None:  # fmt: skip
    conn = await asyncssh.connect(
        "127.0.0.1", server.port, username=user, password=password, known_hosts=None,
        client_keys=[str(key)] if key else None, preferred_auth="publickey,password",
        local_addr=(source, 0),
    )  # fmt: skip
    async with conn:
        await conn.run("true")


def test_ssh_good_logins_buy_no_more_guesses_and_a_ban_says_why(server: Server) -> None:
    """9 guesses at root and a good login as reader, then one more guess: the client is
    disconnected with the reason; keys still log in, passwords are refused with it."""

    async def scenario() -> None:
        for attempt in range(9):
            with pytest.raises(asyncssh.PermissionDenied) as refused:
                await _ssh(server, "root", f"guess-{attempt}")
            assert "too many" not in refused.value.reason
        await _ssh(server, "reader", READER_PASSWORD)
        with pytest.raises(asyncssh.PermissionDenied) as refused:
            await _ssh(server, "root", "guess-9")
        assert "too many failed logins from 127.0.0.1, retry in" in refused.value.reason
        for user, password in (("reader", READER_PASSWORD), ("root", PASSWORD)):
            with pytest.raises(asyncssh.PermissionDenied) as refused:
                await _ssh(server, user, password)
            assert "too many failed logins from 127.0.0.1" in refused.value.reason
        await _ssh(server, "root", key=server.key)  # keys are still accepted

    asyncio.run(scenario())


def test_ssh_unknown_user_costs_as_much_as_a_wrong_password(server: Server) -> None:
    """Measured in one run: an unknown user was answered in a fifth of a wrong password's
    time (47 against 247 ms); now about the same."""

    async def scenario(source: str) -> dict[str, list[float]]:
        took: dict[str, list[float]] = {user: [] for user in USERS}
        for _ in range(3):  # (9 failures: one short of a ban)
            for user in USERS:
                start = time.perf_counter()
                with pytest.raises(asyncssh.PermissionDenied):
                    await _ssh(server, user, "wrong", source=source)
                took[user].append(time.perf_counter() - start)
        return took

    _as_costly(lambda source: asyncio.run(scenario(source)))


def test_ssh_logins_and_logouts_are_logged(server: Server) -> None:
    async def scenario() -> None:
        await _ssh(server, "root", key=server.key)
        await _ssh(server, "reader", READER_PASSWORD)

    asyncio.run(scenario())
    lines = (
        "login root from 127.0.0.1 over ssh (publickey)",
        "logout root from 127.0.0.1 over ssh after ",
        "login reader from 127.0.0.1 over ssh (password)",
        "logout reader from 127.0.0.1 over ssh after ",
    )
    logged = wait_until(lambda: all(line in server.log.read_text() for line in lines), 5)
    assert logged, server.log.read_text()[-3000:]


def test_http_parallel_guesses_are_checked_no_more_than_the_limit(server: Server) -> None:
    """40 guesses sent at once from one address: at most 10 passwords are checked, so a
    burst cannot outrun the count of failures. The others wait for a place and meet the
    ban the failures bring (429), or find the address past its share of the workers
    (503: they wait holding one)."""
    guesses = [f"wrong-{i}" for i in range(40)]
    guesses[32] = PASSWORD
    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(lambda guess: _get(server, "root", guess).status, guesses))
    checked = [status for status in statuses if status in (401, 207)]
    assert len(checked) <= 10, statuses
    assert set(statuses) <= {401, 207, 429, 503}, statuses
    assert statuses.count(429) + statuses.count(503) >= 30, statuses


def test_a_login_waits_for_a_place_among_its_addresses_checks() -> None:
    guard = LoginGuard(limit=2)
    assert guard.reserve("a", "u") is None and guard.reserve("a", "u") is None
    busy = guard.reserve("a", "u")
    assert busy is not None and busy.busy
    threading.Timer(0.3, guard.release, ("a",)).start()
    started = time.monotonic()
    assert guard.reserve_within("a", "u", 10) is None  # the place given back is taken
    assert 0.2 < time.monotonic() - started < 30  # (it waited; liveness on a loaded machine)
    waited = guard.reserve_within("a", "u", 0.3)  # none given back: busy after the wait
    assert waited is not None and waited.busy
    guard.failed("a", "u", "test")
    guard.failed("a", "u", "test")  # (a ban is no reason to wait)
    banned = guard.reserve_within("a", "u", 10)
    assert banned is not None and not banned.busy


def test_ssh_twenty_good_password_logins_at_once_from_one_address_all_get_in(
    server: Server,
) -> None:
    """A team behind one address logging in together: 10 of 20 were refused "too many
    logins at once"; now they wait for the address's running checks, and all get in."""

    async def login() -> None:
        async with asyncssh.connect(
            "127.0.0.1", server.port, username="root", password=PASSWORD,
            known_hosts=None, client_keys=None, agent_path=None,
        ) as conn:  # fmt: skip
            result = await conn.run("true", check=False)
            del result

    async def scenario() -> list[BaseException | None]:
        return await asyncio.gather(*(login() for _ in range(20)), return_exceptions=True)

    outcomes = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert outcomes == [None] * 20, outcomes
