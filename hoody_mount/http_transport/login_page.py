"""The login page: a user name and password, or a token, in a form that posts to /login.

Nothing is loaded from elsewhere and nothing runs: its one style sheet carries the
answer's nonce, and the policy allows nothing else (``CSP``).
"""

from __future__ import annotations

from html import escape

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

_STYLE = """
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:1rem;background:#f4f5f7;color:#1a1a1a}
main{max-width:24rem;margin:2rem auto;background:#fff;padding:1.25rem;border-radius:6px;
border:1px solid #ccd}
h1{font-size:1.4rem;margin:0 0 1rem}
label{display:block;margin-top:.75rem;font-weight:600}
input{display:block;width:100%;font:inherit;padding:.45rem;border:1px solid #667;border-radius:4px}
input:focus,button:focus{outline:3px solid #1a5fb4;outline-offset:1px}
fieldset{border:1px solid #ccd;border-radius:4px;margin:1rem 0 0;padding:0 .75rem .75rem}
legend{padding:0 .25rem}
button{margin-top:1rem;width:100%;font:inherit;font-weight:600;padding:.55rem;border:0;
border-radius:4px;background:#1a5fb4;color:#fff;cursor:pointer}
.alert{background:#fdecea;border:1px solid #b3261e;color:#8c1d18;padding:.5rem;border-radius:4px}
.note{font-size:.9rem;color:#444}
"""


def render(
    nonce: str,
    next_path: str,
    user: str = "",
    error: str | None = None,
    clear_text: str | None = None,
) -> bytes:
    """The page: the form, ``error`` above it (an alert a screen reader announces), and
    ``clear_text``, why a password cannot come over this connection, when it cannot."""
    alert = f'<p class="alert" role="alert" id="error">{escape(error)}</p>\n' if error else ""
    described = ' aria-describedby="error"' if error else ""
    note = (
        f'<p class="note" id="clear-text">Over this connection {escape(clear_text)}: '
        "open this page with https://, or log in with a token.</p>\n"
        if clear_text
        else ""
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>Log in · hoody-mount</title>
<style nonce="{escape(nonce)}">{_STYLE}</style>
</head>
<body>
<main>
<h1>Log in to hoody-mount</h1>
{alert}{note}<form method="post" action="{LOGIN_PATH}">
<input type="hidden" name="next" value="{escape(next_path)}">
<fieldset>
<legend>With your password</legend>
<label for="user">User name</label>
<input id="user" name="user" type="text" value="{escape(user)}" autocomplete="username"
 autocapitalize="none" spellcheck="false" autofocus{described}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"{described}>
</fieldset>
<fieldset>
<legend>Or with an API token</legend>
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="off" spellcheck="false"
 aria-describedby="token-help">
<p class="note" id="token-help">A token from <code>hoody-mount token create</code>;
leave the password fields empty.</p>
</fieldset>
<button type="submit">Log in</button>
</form>
</main>
</body>
</html>
"""
    return page.encode()
