"""Names the HTTP listener and its two fronts share, defined once: where each front
lives, and the keys under which the listener hands a request's context to them."""

from __future__ import annotations

DAV_ROOT = "/dav"  # the WebDAV share
FILES_ROOT = "/api/v1/files"  # the file API (its pages too)
STORAGE_ROOT = "/api/v1/storage"  # the file API's capacity and du answers
SHARES_ROOT = "/api/v1/shares"  # the shares API, for administrators
LOCKS_ROOT = "/api/v1/locks"  # every lock, for administrators
API_PREFIX = "/api/"  # everything the file API answers lies below this
SESSION = "hoody.session"  # environ: the request's core Session
CLIENT_GONE = "hoody.client_gone"  # environ: a callable, whether the client has gone
OPERATION = "hoody.operation"  # environ: the file API's name for a request, for the metrics
PEER = "hoody.peer"  # environ: the TCP peer's address (a proxy's, when it named the client)
SHOWN_ROOT = "hoody.shown_root"  # environ: the URL a front's root is shown at, when not its
# own (a share link's: /s/<secret> for the file API, /s/<secret>/dav for WebDAV)
LINKS_ROOT = "/s"  # share links: /s/<secret>/ (the file API's pages), /s/<secret>/dav/
LOGGED_IN = "hoody.logged_in"  # environ: true when the request came with the login
# page's session cookie (the page then offers "Log out", a POST form to /logout)
