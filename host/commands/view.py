"""``skid view LINE --broker URL --line-id ID``: the live web view of a line whose
coordinator runs elsewhere.

Serves a page (127.0.0.1:8600 by default) with the line diagram and its live values,
trends, the alarm list, the recipe timeline and the controls; read-only until someone
logs in as a named user (``skid user``).  A non-local ``--bind`` needs ``--tls-cert`` /
``--tls-key`` and at least one user.  Runs until Ctrl-C.  See docs/cli.md ("Live view").

Exit codes: 0 stopped by Ctrl-C, 2 usage or configuration error (nothing served),
1 anything else.
"""

from __future__ import annotations

import os
import sys
import time

from host.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from host.commands.user import add_users_file

DEFAULT_BIND = "127.0.0.1:8600"


def add_view_options(p, with_flag: bool) -> None:
    """``--bind``, ``--tls-cert``, ``--tls-key`` (and ``--view`` for run/demo)."""
    if with_flag:
        p.add_argument(
            "--view",
            action="store_true",
            help="serve the live web view of the run (prints its URL; in process the run "
            "then goes at --speed, default 1)",
        )
    p.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="HOST:PORT",
        help=f"where the view listens (default {DEFAULT_BIND}; a non-local address needs "
        "--tls-cert/--tls-key and users)",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve the view over HTTPS with this cert")
    p.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert")


def register(sub) -> None:
    p = sub.add_parser(
        "view",
        help="serve the live web view of a running line (diagram, trends, alarms, controls)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("line", help="the line file (the diagram is drawn from it)")
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST[:PORT]")
    p.add_argument(
        "--line-id", "--line", dest="line_id", metavar="ID", help="line id (default: the file's)"
    )
    add_view_options(p, with_flag=False)
    add_users_file(p)
    p.add_argument(
        "--operator-key-file",
        "--operator-key",
        dest="operator_key_file",
        default=os.environ.get("SKID_OPERATOR_KEY_FILE"),
        metavar="FILE",
        help="sign the page's requests with this key (resume needs it, as with the CLI; "
        "default $SKID_OPERATOR_KEY_FILE)",
    )
    p.set_defaults(func=run)


def view_options(args, operator_key):
    """The ``ViewOptions`` of ``args``; BindError (a ValueError) when refused."""
    from host.view.serve import ViewOptions  # lazy: start-up

    return ViewOptions(
        args.bind,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        users_file=args.users_file,
        operator_key=operator_key,
    )


def run(args) -> int:
    from host.control import ControlError, read_operator_key
    from host.transport import TransportError
    from line.loader import LineError, load_line
    from protocol.topics import TopicError, validate_id

    try:
        line = load_line(args.line)
        line_id = args.line_id or line.id
        validate_id("line", line_id)
        key = read_operator_key(args.operator_key_file) if args.operator_key_file else None
        options = view_options(args, key)
    except (LineError, TopicError, ControlError, OSError, ValueError) as exc:
        print(f"skid view: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from host.view.serve import BrokerView

    try:
        view = BrokerView(line, line_id, args.broker, options)
    except TransportError as exc:
        print(f"skid view: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.reason == "usage" else EXIT_FAILURE
    except ValueError as exc:
        print(f"skid view: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"skid view: line {line_id} on {args.broker}: {view.url}", flush=True)
    if key is None:
        print("skid view: no operator key: resume is unavailable from the page", file=sys.stderr)
    try:
        while view.thread.thread.is_alive():
            time.sleep(0.5)
        print(f"skid view: the line follower stopped: {view.thread.error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        view.close()
