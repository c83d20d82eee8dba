"""``skid broker-config LINE_FILE -o DIR``: a locked-down Mosquitto configuration for a line.

Writes DIR/mosquitto.conf (no anonymous clients, password file, ACL, persistence, an
optional TLS listener), DIR/passwords (one random password per module, one for the host,
one per operator; hashed), DIR/acl (each module publishes only its own topics and reads
only its own commands and the host's lease/state; the host reads the line and commands
every module; operators use the control topics) and DIR/credentials.toml (mode 0600: the
plain credentials to provision boards with).  Passwords are never printed.

Exit codes: 0 written, 2 bad line file or arguments, 1 anything else.
"""

from __future__ import annotations

import json
import sys

from host.brokerconfig import (
    DEFAULT_CONF_DIR,
    DEFAULT_PERSISTENCE_DIR,
    BrokerConfigError,
    generate,
)
from protocol.topics import TopicError, validate_id


def register(sub) -> None:
    p = sub.add_parser(
        "broker-config",
        help="generate a secured Mosquitto configuration (accounts, ACL, TLS) for a line",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("line_file", metavar="LINE_FILE", help="line file (examples/lines/*.toml)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="where to write")
    p.add_argument("--line-id", metavar="ID", help="line id in the topics (default: the file's)")
    p.add_argument("--operators", metavar="NAME,...", default="", help="operator accounts")
    p.add_argument("--tls-cert", metavar="FILE", help="server certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="server private key (PEM)")
    p.add_argument("--tls-port", type=int, default=8883, help="TLS listener port (default 8883)")
    p.add_argument("--port", type=int, default=1883, help="plain listener port (default 1883)")
    p.add_argument("--bind", metavar="ADDRESS", help="plain listener address (default: all)")
    p.add_argument(
        "--conf-dir",
        default=DEFAULT_CONF_DIR,
        help=f"where the files will live on the broker machine (default {DEFAULT_CONF_DIR})",
    )
    p.add_argument(
        "--persistence-dir",
        default=DEFAULT_PERSISTENCE_DIR,
        help=f"Mosquitto persistence directory (default {DEFAULT_PERSISTENCE_DIR})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=run)


def run(args) -> int:
    from line.loader import LineError, load_line  # lazy: start-up

    try:
        line = load_line(args.line_file)
    except LineError as exc:
        print(f"skid broker-config: {exc}", file=sys.stderr)
        return 2
    line_id = args.line_id or line.id
    operators = [n.strip() for n in args.operators.split(",") if n.strip()]
    try:
        validate_id("line", line_id)
        clash = sorted(set(operators) & set(line.modules))
        if clash:
            raise BrokerConfigError(f"--operators: {', '.join(clash)}: also module ids")
        gen = generate(
            line_id,
            list(line.modules),
            args.output,
            operators=operators,
            conf_dir=args.conf_dir,
            persistence_dir=args.persistence_dir,
            port=args.port,
            bind=args.bind,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_port=args.tls_port,
        )
    except (BrokerConfigError, TopicError) as exc:
        print(f"skid broker-config: {exc}", file=sys.stderr)
        return 2
    for path in gen.files:
        print(f"skid broker-config: wrote {path}", file=sys.stderr)
    users = {a.username: a.role for a in gen.accounts}
    print(
        f"skid broker-config: {len(users)} accounts for line {line_id} "
        f"({', '.join(users)}); passwords hashed by {gen.hashed_by}; the plain passwords "
        f"are only in {args.output}/credentials.toml (mode 0600)",
        file=sys.stderr,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "line": line_id,
                    "accounts": users,
                    "files": [str(p) for p in gen.files],
                    "hashed_by": gen.hashed_by,
                }
            )
        )
    return 0
