"""`jobrt dashboard --config PATH [--listen HOST:PORT] [--read-only]`: the web dashboard
(runtime.dashboard) in a process of its own, served by uvicorn. It needs the `dashboard`
extra (pip install 'jobrt[dashboard]')."""

from __future__ import annotations

import socket
import sys

from runtime.cli.admin import EXIT_OK, UsageError, config_arg, load
from runtime.errors import ConfigError

EPILOG = """\
It listens on loopback (127.0.0.1:9466) unless told otherwise; another address needs
[dashboard] token or password_file, which every request must then carry (HTTP Basic
password, any user name, or Authorization: Bearer TOKEN). Every action is a POST with a
CSRF token; --read-only refuses them all. [dashboard] show_args = false hides jobs'
arguments and results."""


def add_parser(commands) -> None:
    import argparse

    parser = commands.add_parser("dashboard", help="serve the web dashboard",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arg(parser)
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="address to serve on (default: [dashboard] listen, 127.0.0.1:9466; "
                             "port 0 = any free port)")
    parser.add_argument("--read-only", action="store_true", help="refuse every action (retry, cancel, ...)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def bind(listen: str, path, key: str) -> socket.socket:
    """A listening socket on HOST:PORT; ConfigError naming `key` when it cannot be."""
    from runtime.supervisor.metrics import parse_listen

    try:
        host, port = parse_listen(listen)
    except ValueError as err:
        raise ConfigError(str(err), path, key) from None
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {listen}: {err.strerror or err}", path, key) from None
    return sock


def cmd_dashboard(args) -> int:
    try:
        import uvicorn

        from runtime.dashboard.app import create_app
    except ImportError as err:
        raise UsageError(f"the dashboard needs the dashboard extra ({err.name} is missing): "
                         f"pip install 'jobrt[dashboard]'") from None
    from runtime.dashboard.auth import read_token, refuse_reason
    from runtime.supervisor.metrics import parse_listen

    cfg = load(args)
    listen = args.listen or cfg.dashboard_listen
    key = "--listen" if args.listen else "dashboard.listen"
    try:
        host, _ = parse_listen(listen)
    except ValueError as err:
        raise (UsageError(f"dashboard: --listen {err}") if args.listen
               else ConfigError(str(err), cfg.path, key)) from None
    token = read_token(cfg)
    refused = refuse_reason(host, token)
    if refused:
        raise ConfigError(refused, cfg.path, "dashboard.token")
    app = create_app(cfg, read_only=args.read_only, token=token)
    from runtime.cli.admin import open_client_storage

    open_client_storage(cfg).close()  # storage that cannot be opened: one line, exit 1, now
    sock = bind(listen, cfg.path, key)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"jobrt dashboard on http://{shown}:{bound[1]}/ ({cfg.storage_url if '@' not in cfg.storage_url else 'postgresql'}"
          f"{', read-only' if args.read_only else ''})", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, access_log=False,
                                           lifespan="on", server_header=False))
    server.run(sockets=[sock])
    return EXIT_OK


COMMANDS = {"dashboard": cmd_dashboard}
