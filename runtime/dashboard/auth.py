"""Who may use the dashboard, and which POSTs are the dashboard's own.

    request --Guard (ASGI middleware)--> token? (HTTP Basic password or Bearer) --> the app
    page ------csrf_token()------------> <input name="csrf"> in every form
    POST ------check_csrf(form)--------> refused (403) unless the token matches

The token comes from `[dashboard] token` or the first line of `[dashboard] password_file`;
without one the dashboard serves only a loopback address (`refuse_reason` says why not,
for the command to exit 2). The CSRF token is an HMAC of a secret made at start: a page
from another site can make a browser send a POST with its credentials, but cannot read the
token from our pages, so its POST is refused; GET changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets

from runtime.errors import ConfigError

REALM = "jobrt dashboard"


def read_token(cfg) -> str:
    """The token of a config: [dashboard] token, or the password file's first line."""
    if cfg.dashboard_token:
        return cfg.dashboard_token
    if not cfg.dashboard_password_file:
        return ""
    path = os.path.join(cfg.base_dir, cfg.dashboard_password_file)
    try:
        with open(path, encoding="utf-8") as file:
            token = file.readline().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the password file {path}: "
                          f"{getattr(err, 'strerror', None) or err}", cfg.path,
                          "dashboard.password_file") from None
    if not token:
        raise ConfigError(f"the password file {path} is empty", cfg.path, "dashboard.password_file")
    return token


def refuse_reason(host: str, token: str) -> str | None:
    """Why the dashboard must not listen on `host` (an IP address), or None."""
    if token or ipaddress.ip_address(host).is_loopback:
        return None
    return (f"{host} can be reached from other hosts: set [dashboard] token (or password_file) "
            f"so that requests must carry it, or listen on 127.0.0.1")


class Guard:
    """ASGI middleware: every HTTP request must carry the token (when there is one)."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.token or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = b"401: this dashboard needs its token (HTTP Basic password, or Bearer)\n"
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode())]})
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name != b"authorization":
                continue
            kind, _, credentials = value.partition(b" ")
            kind = kind.lower()
            if kind == b"bearer":
                return hmac.compare_digest(credentials.strip(), self.token)
            if kind == b"basic":
                try:
                    _, _, password = base64.b64decode(credentials.strip(), validate=True).partition(b":")
                except ValueError:
                    return False
                return hmac.compare_digest(password, self.token)
        return False


class Csrf:
    """The token every form carries and every POST must give back."""

    def __init__(self, secret: bytes | None = None):
        self.secret = secret or secrets.token_bytes(32)
        self.token = hmac.new(self.secret, b"jobrt dashboard csrf", hashlib.sha256).hexdigest()

    def check(self, given: str | None) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self.token.encode())
