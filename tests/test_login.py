"""The login page: a form that gives a session cookie, checked as Basic and Bearer are
(the login guard, unknown users, tokens), bound to the user as configured now (a reload
that removes the user, a revoked token, a logout end it), accepted by the file API only
(not WebDAV), never from another site; browsers without credentials are sent to it,
scripts still get 401 with WWW-Authenticate."""

from __future__ import annotations

import base64
import http.client
import io
import re
import signal
import ssl
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import PASSWORD, Server, password_hash, served, server_log, wait_until
from test_api import token_cli

from hoody_mount.core.guard import LoginGuard
from hoody_mount.core.users import User, hash_password
from hoody_mount.http_names import LOGGED_IN
from hoody_mount.http_transport.auth import Authenticator, AuthError
from hoody_mount.http_transport.login import PageLogins
from hoody_mount.http_transport.login_sessions import LoginSessions

COOKIE = re.compile(
    r"hoody_session=([A-Za-z0-9_-]{43}); Path=/; HttpOnly; SameSite=Strict; "
    r"Max-Age=(\d+)(; Secure)?"
)
HTML = "text/html,application/xhtml+xml,*/*;q=0.8"
FILES = "/api/v1/files"


def send(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    tls: bool = False,
) -> tuple[int, http.client.HTTPResponse, bytes]:
    """One request with only the headers given; status, response (its headers) and body."""
    conn: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            "127.0.0.1", server.http_port, timeout=30, context=context
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply, reply.read()
    finally:
        conn.close()


def login(
    server: Server, tls: bool = False, extra: dict[str, str] | None = None, **fields: str
) -> tuple[int, http.client.HTTPResponse, bytes]:
    """POST the login form with these fields."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", **(extra or {})}
    return send(server, "POST", "/login", urlencode(fields).encode(), headers, tls)


def cookie_of(reply: http.client.HTTPResponse) -> str:
    """The session secret a successful login set."""
    match = COOKIE.fullmatch(reply.headers["Set-Cookie"] or "")
    assert match, reply.headers["Set-Cookie"]
    return match.group(1)


def with_cookie(secret: str, **headers: str) -> dict[str, str]:
    return {"Cookie": f"other=1; hoody_session={secret}", **headers}


def origin(server: Server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def test_the_page_is_accessible_and_locked_down(server: Server) -> None:
    status, reply, body = send(server, "GET", "/login?next=%2Fapi%2Fv1%2Ffiles%2Fshare%2F")
    assert status == 200 and reply.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = reply.headers["Content-Security-Policy"]
    nonce = re.search(r"style-src 'nonce-([A-Za-z0-9_-]+)'", csp)
    assert nonce and csp.startswith("default-src 'none';"), csp
    assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    page = body.decode()
    assert f'<style nonce="{nonce.group(1)}">' in page and "<script" not in page
    assert "http://" not in page.replace("https://", "") and "src=" not in page
    for label in ('<label for="user">', '<label for="password">', '<label for="token">'):
        assert label in page
    assert 'autocomplete="username"' in page and 'autocomplete="current-password"' in page
    assert "autofocus" in page and 'name="viewport"' in page and 'role="alert"' not in page
    assert '<input type="hidden" name="next" value="/api/v1/files/share/">' in page
    assert reply.headers["Cache-Control"] == "no-store"
    # a foreign next is never put in the form
    _, _, body = send(server, "GET", "/login?next=%2F%2Fevil.example%2F")
    assert 'name="next" value="/api/v1/files/"' in body.decode()
    status, _, body = send(server, "HEAD", "/login")
    assert status == 200 and body == b""
    status, reply, _ = send(server, "GET", "/logout")
    assert status == 405 and reply.headers["Allow"] == "POST"


def test_a_password_login_lists_and_uploads_with_the_cookie(server: Server) -> None:
    status, reply, _ = login(server, user="root", password=PASSWORD, next=f"{FILES}/share/?json")
    assert status == 303 and reply.headers["Location"] == f"{FILES}/share/?json"
    secret = cookie_of(reply)
    assert reply.headers["Set-Cookie"].endswith("Max-Age=43200")  # 12 hours, no Secure
    status, _, body = send(server, "GET", f"{FILES}/share/?json", headers=with_cookie(secret))
    assert status == 200 and b'"docs"' in body
    status, reply, body = send(
        server, "GET", f"{FILES}/share/", headers=with_cookie(secret, Accept=HTML)
    )
    assert status == 200 and reply.headers["Content-Type"].startswith("text/html"), body
    headers = with_cookie(secret, Origin=origin(server))
    status, _, body = send(server, "PUT", f"{FILES}/share/new.txt", b"by cookie", headers)
    assert status in (200, 201), body
    assert (server.root / "share" / "new.txt").read_bytes() == b"by cookie"
    assert wait_until(
        lambda: "login root from 127.0.0.1 over http (password, page)" in server_log(server), 5
    )
    assert server_log(server).count("(password, page)") == 1
    # Basic and Bearer still work beside it
    basic = "Basic " + base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    assert send(server, "GET", f"{FILES}/share/", headers={"Authorization": basic})[0] == 200
    token = token_cli(server, "create", "root").strip()
    bearer = {"Authorization": f"Bearer {token}"}
    assert send(server, "GET", f"{FILES}/share/", headers=bearer)[0] == 200


def test_the_cookie_is_secure_over_tls_and_lasts_login_hours(
    tmp_path: Path, client_key: Path
) -> None:
    with served(tmp_path, client_key, flags=("--tls",), http="login_hours = 2") as server:
        status, reply, _ = login(server, tls=True, user="root", password=PASSWORD)
        assert status == 303 and reply.headers["Location"] == f"{FILES}/"
        match = COOKIE.fullmatch(reply.headers["Set-Cookie"])
        assert match and match.group(2) == "7200" and match.group(3) == "; Secure"
        status, _, _ = send(
            server, "GET", f"{FILES}/", headers=with_cookie(match.group(1)), tls=True
        )
        assert status == 200


def test_wrong_passwords_and_unknown_users_are_counted_then_banned(server: Server) -> None:
    """The form's failures are the guard's: 10 from an address, then 429 with the ban."""
    for attempt in range(10):
        user = "root" if attempt % 2 else "nobody"
        status, reply, body = login(server, user=user, password="wrong", next=f"{FILES}/share/")
        assert status == 401 and reply.headers["Content-Type"].startswith("text/html")
        assert "Set-Cookie" not in reply.headers
        page = body.decode()
        assert '<p class="alert" role="alert" id="error">wrong user name or password</p>' in page
        assert f'value="{user}"' in page and f'name="next" value="{FILES}/share/"' in page
    status, reply, body = login(server, user="root", password=PASSWORD)
    assert status == 429 and int(reply.headers["Retry-After"]) > 0
    assert "too many failed logins from 127.0.0.1" in body.decode()


def test_a_token_login_ends_when_the_token_is_revoked(server: Server) -> None:
    token = token_cli(server, "create", "root", "--ro").strip()
    status, reply, body = login(server, token="hm_000000000000_wrong")
    assert status == 401 and 'role="alert"' in body.decode()
    status, reply, _ = login(server, token=token)
    assert status == 303
    secret = cookie_of(reply)
    assert send(server, "GET", f"{FILES}/share/", headers=with_cookie(secret))[0] == 200
    headers = with_cookie(secret, Origin=origin(server))
    assert send(server, "PUT", f"{FILES}/share/x.txt", b"x", headers)[0] == 403  # read-only
    assert wait_until(
        lambda: "login root from 127.0.0.1 over http (token, page)" in server_log(server), 5
    )
    token_cli(server, "revoke", token[3:15])
    status, reply, _ = send(server, "GET", f"{FILES}/share/", headers=with_cookie(secret))
    assert status == 401 and "Max-Age=0" in reply.headers["Set-Cookie"]


def test_a_user_removed_by_a_reload_loses_the_session(tmp_path: Path, client_key: Path) -> None:
    temp = f'\n[users.temp]\npassword_hash = "{password_hash("temp password")}"\nroot = "/share"\n'
    with served(tmp_path, client_key, users=temp) as server:
        status, reply, _ = login(server, user="temp", password="temp password")
        secret = cookie_of(reply)
        assert send(server, "GET", f"{FILES}/", headers=with_cookie(secret))[0] == 200
        config = tmp_path / "hoody-mount.toml"
        config.write_text(config.read_text().replace(temp, "\n"))
        server.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reloaded" in server_log(server), 20), server_log(server)
        status, reply, _ = send(
            server, "GET", f"{FILES}/", headers=with_cookie(secret, Accept=HTML)
        )
        assert status == 303 and reply.headers["Location"] == "/login?next=%2Fapi%2Fv1%2Ffiles%2F"
        assert "Max-Age=0" in reply.headers["Set-Cookie"]


def _reload(server: Server, config: Path, old: str, new: str) -> None:
    """Edit the server's config and make it read it again (SIGHUP)."""
    before = server_log(server).count("reloaded")
    config.write_text(config.read_text().replace(old, new))
    server.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: server_log(server).count("reloaded") > before, 20)


def test_a_new_password_or_a_new_user_of_the_name_ends_the_session(
    tmp_path: Path, client_key: Path
) -> None:
    """A session is bound to the password it was made with: changed (the usual remedy
    for a stolen cookie), or the user removed and made again under the same name with
    wider rights while the cookie lay unused, it no longer opens anything."""
    config = tmp_path / "hoody-mount.toml"
    jailed = (
        f'\n[users.temp]\npassword_hash = "{password_hash("temp password")}"\nroot = "/share"\n'
    )
    with served(tmp_path, client_key, users=jailed) as server:
        first = cookie_of(login(server, user="temp", password="temp password")[1])
        assert send(server, "GET", f"{FILES}/", headers=with_cookie(first))[0] == 200
        changed = jailed.replace(password_hash("temp password"), password_hash("new password"))
        _reload(server, config, jailed, changed)
        assert send(server, "GET", f"{FILES}/", headers=with_cookie(first))[0] == 401
        second = cookie_of(login(server, user="temp", password="new password")[1])
        third = cookie_of(login(server, user="temp", password="new password")[1])
        _reload(server, config, changed, "\n")  # removed, with no request in between
        # made again unjailed: with the same password hash (the removal ended the
        # sessions), and with a new one (made by user add: a new salt)
        wider = f'\n[users.temp]\npassword_hash = "{password_hash("new password")}"\n'
        _reload(server, config, "[users.jailed]", wider.strip() + "\n\n[users.jailed]")
        status, _, body = send(server, "GET", f"{FILES}/?json", headers=with_cookie(second))
        assert status == 401 and b"home" not in body
        fresh = wider.replace(password_hash("new password"), hash_password("new password"))
        _reload(server, config, wider.strip(), fresh.strip())
        status, _, body = send(server, "GET", f"{FILES}/?json", headers=with_cookie(third))
        assert status == 401 and b"home" not in body


def test_a_user_who_may_not_use_http_cannot_log_in_on_the_page(
    tmp_path: Path, client_key: Path
) -> None:
    users = (
        f'\n[users.sftponly]\npassword_hash = "{password_hash(PASSWORD)}"\nprotocols = ["sftp"]\n'
    )
    with served(tmp_path, client_key, users=users) as server:
        status, reply, body = login(server, user="sftponly", password=PASSWORD)
        assert status == 403 and b"http is not allowed for sftponly" in body
        assert reply.headers["Set-Cookie"] is None


def test_a_login_page_address_with_many_fields_is_still_the_page(server: Server) -> None:
    fields = "&".join(f"a{i}=1" for i in range(50))
    status, _, body = send(server, "GET", f"/login?{fields}&next=/api/v1/files/share/")
    assert status == 200 and b'name="next" value="/api/v1/files/share/"' not in body
    assert "Traceback" not in server_log(server)


def test_logout_ends_the_session(server: Server) -> None:
    secret = cookie_of(login(server, user="root", password=PASSWORD)[1])
    # from another site: refused, the session lives on
    foreign = with_cookie(secret, Origin="http://evil.example")
    assert send(server, "POST", "/logout", b"", foreign)[0] == 403
    assert send(server, "GET", f"{FILES}/", headers=with_cookie(secret))[0] == 200
    # Origin: null alone is refused; a page without referrer sends it, with Sec-Fetch-Site
    assert send(server, "POST", "/logout", b"", with_cookie(secret, Origin="null"))[0] == 403
    headers = with_cookie(secret, Origin="null", **{"Sec-Fetch-Site": "same-origin"})
    status, reply, _ = send(server, "POST", "/logout", b"", headers)
    assert status == 303 and reply.headers["Location"] == "/login"
    assert (
        reply.headers["Set-Cookie"]
        == "hoody_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    )
    # the page's own requests after that: 401 without a challenge (the browser would ask
    # with its own prompt), saying where to log in, and the cookie dropped
    status, reply, body = send(server, "GET", f"{FILES}/", headers=with_cookie(secret))
    assert status == 401 and reply.headers["WWW-Authenticate"] is None
    assert b"log in again at /login" in body
    assert reply.headers["Set-Cookie"].startswith("hoody_session=;")
    put = with_cookie(secret, Origin=origin(server))
    status, reply, _ = send(server, "PUT", f"{FILES}/share/late.txt", b"late", put)
    assert status == 401 and reply.headers["WWW-Authenticate"] is None
    assert not (server.root / "share" / "late.txt").exists()
    assert wait_until(
        lambda: "logout root from 127.0.0.1 over http (page)" in server_log(server), 5
    )


@pytest.mark.parametrize(
    "next_path",
    ["//evil.example/", "https://evil.example/", "/\\evil.example/", "evil", "/a b", ""],
)
def test_next_never_leaves_the_server(server: Server, next_path: str) -> None:
    status, reply, _ = login(server, user="root", password=PASSWORD, next=next_path)
    assert status == 303 and reply.headers["Location"] == f"{FILES}/"


def test_a_login_from_another_site_is_refused(server: Server) -> None:
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        status, reply, body = login(server, extra=headers, user="root", password=PASSWORD)
        assert status == 403 and "Set-Cookie" not in reply.headers
        assert 'role="alert"' in body.decode()
    status, _, _ = login(server, extra={"Origin": origin(server)}, user="root", password=PASSWORD)
    assert status == 303


def test_changes_with_the_cookie_from_another_site_are_refused(server: Server) -> None:
    secret = cookie_of(login(server, user="root", password=PASSWORD)[1])
    (server.root / "share" / "keep.txt").write_text("precious")
    for method, body in (("PUT", b"evil"), ("DELETE", None), ("POST", b"{}")):
        for hint in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            headers = with_cookie(secret, **hint, **{"Content-Type": "text/plain"})
            status, _, answer = send(server, method, f"{FILES}/share/keep.txt", body, headers)
            assert status == 403 and b"cross_origin" in answer, (method, status, answer)
    assert (server.root / "share" / "keep.txt").read_text() == "precious"


def test_the_cookie_is_not_accepted_by_webdav(server: Server) -> None:
    secret = cookie_of(login(server, user="root", password=PASSWORD)[1])
    for method in ("PROPFIND", "GET", "PUT"):
        status, reply, _ = send(
            server, method, "/dav/share/docs/readme.txt", b"", with_cookie(secret)
        )
        assert status == 401 and reply.headers["WWW-Authenticate"].startswith("Basic"), method
    assert (server.root / "share" / "docs" / "readme.txt").read_text() == "shared text\n"


def test_browsers_are_sent_to_the_page_and_scripts_get_401(server: Server) -> None:
    status, reply, _ = send(
        server, "GET", f"{FILES}/share/docs/?sort=size", headers={"Accept": HTML}
    )
    assert status == 303
    assert (
        reply.headers["Location"]
        == "/login?next=%2Fapi%2Fv1%2Ffiles%2Fshare%2Fdocs%2F%3Fsort%3Dsize"
    )
    assert "Set-Cookie" not in reply.headers
    status, reply, _ = send(server, "GET", f"{FILES}/share/docs/", headers={"Accept": "*/*"})
    assert status == 401 and reply.headers["WWW-Authenticate"].startswith("Basic")
    # a wrong cookie on a page: to the login page, the cookie dropped
    headers = with_cookie("x" * 43, Accept=HTML)
    status, reply, _ = send(server, "GET", f"{FILES}/share/", headers=headers)
    assert status == 303 and reply.headers["Location"].startswith("/login?next=")
    assert "Max-Age=0" in reply.headers["Set-Cookie"]
    # wrong Basic from a browser stays Basic's 401
    wrong = "Basic " + base64.b64encode(b"root:wrong").decode()
    status, reply, _ = send(
        server, "GET", f"{FILES}/", headers={"Accept": HTML, "Authorization": wrong}
    )
    assert status == 401 and reply.headers["WWW-Authenticate"].startswith("Basic")
    # health stays open
    assert send(server, "GET", "/healthz")[0] == 200


def test_a_form_that_is_not_one_is_refused(server: Server) -> None:
    status, _, body = send(
        server, "POST", "/login", b'{"user":"root"}', {"Content-Type": "application/json"}
    )
    assert status == 415 and 'role="alert"' in body.decode()
    big = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = send(server, "POST", "/login", b"a=" + b"x" * 9000, big)
    assert status == 413
    status, _, body = login(server, user="", password="")
    assert status == 400 and "user name and password, or a token" in body.decode()


# -- in process: what a loopback test server cannot show ---------------------------------------


def _front() -> tuple[PageLogins, LoginSessions]:
    user = User("alice", password_hash=password_hash(PASSWORD))
    sessions = LoginSessions(3600, per_user=2, in_all=3)
    return PageLogins(Authenticator({"alice": user}, LoginGuard()), sessions), sessions


def _environ(**extra: object) -> dict[str, object]:
    return {"REMOTE_ADDR": "10.0.0.5", "wsgi.url_scheme": "http", "REQUEST_METHOD": "GET", **extra}


def test_a_password_over_plain_http_from_afar_is_refused_and_the_page_says_so() -> None:
    pages, _ = _front()
    answers: list[str] = []
    body = b"".join(pages.answer(_environ(PATH_INFO="/login"), lambda s, h: answers.append(s)))
    assert answers == ["200 OK"] and b"passwords are accepted only over HTTPS" in body
    form = urlencode({"user": "alice", "password": PASSWORD}).encode()
    environ = _environ(
        PATH_INFO="/login", REQUEST_METHOD="POST", CONTENT_LENGTH=str(len(form)),
        CONTENT_TYPE="application/x-www-form-urlencoded", **{"wsgi.input": io.BytesIO(form)},
    )  # fmt: skip
    body = b"".join(pages.answer(environ, lambda s, h: answers.append(s)))
    assert answers[-1] == "403 Forbidden" and b'role="alert"' in body


def test_a_cookie_marks_the_request_logged_in_and_sessions_are_bounded() -> None:
    pages, sessions = _front()
    alice = pages.auth.users["alice"]
    first = sessions.create("alice", credential=pages.auth.credential(alice))
    environ = _environ(HTTP_COOKIE=f"hoody_session={first}")
    grant = pages.grant(environ)
    assert grant is not None and grant.user.name == "alice" and environ[LOGGED_IN] is True
    assert pages.grant(_environ()) is None  # no cookie: no grant, Basic decides
    later = [sessions.create("alice", credential=pages.auth.credential(alice)) for _ in range(2)]
    assert sessions.find(first) is None and all(sessions.find(s) for s in later)  # per user
    sessions.create("bob"), sessions.create("carol")
    assert len(sessions) == 3 and sessions.find(later[0]) is None  # in all
    with pytest.raises(AuthError) as refused:
        pages.grant(_environ(HTTP_COOKIE=f"hoody_session={first}"))
    assert refused.value.status.startswith("401")
    short = LoginSessions(0.05)
    secret = short.create("alice")
    time.sleep(0.1)
    assert short.find(secret) is None  # expired
