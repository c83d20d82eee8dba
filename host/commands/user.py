"""``skid user add|disable|list``: the named users of this installation (``host/users.py``).

The store is ``users.json`` in the configuration directory (``$SKID_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/flowskid``, else ``~/.config/flowskid``; ``--users-file`` overrides it).
The first user of an empty store must be a supervisor; after that ``add`` and ``disable``
are authenticated as a supervisor (``--by NAME``, password from ``$SKID_PASSWORD`` or a
prompt).  Users are never deleted, only disabled.

Exit codes: 0 done, 1 refused (authentication, a rule of the store), 2 usage error.
"""

from __future__ import annotations

import json
import os
import sys

from host.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

_ROLES = ("operator", "supervisor", "qa")  # host.users.ROLES, without importing argon2 here


def add_users_file(p) -> None:
    """``--users-file``, shared by every command that authenticates a user."""
    p.add_argument(
        "--users-file",
        metavar="FILE",
        help="the user store (default: users.json in $SKID_CONFIG_DIR, "
        "$XDG_CONFIG_HOME/flowskid or ~/.config/flowskid)",
    )


def register(sub) -> None:
    p = sub.add_parser(
        "user", help="named users and roles: add, disable, list", description=__doc__
    )
    p.set_defaults(func=lambda _args: EXIT_USAGE)  # argparse asks for ACTION before this
    usub = p.add_subparsers(dest="user_command", metavar="ACTION")
    usub.required = True
    a = usub.add_parser("add", help="add a user (asks its password)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=_ROLES)
    a.add_argument("--full-name", default="", help="the person's name as it appears in reports")
    a.add_argument("--by", metavar="NAME", help="the supervisor adding it (not for the first)")
    add_users_file(a)
    a.set_defaults(func=run_add)
    d = usub.add_parser("disable", help="disable a user (kept in the store, cannot log in)")
    d.add_argument("name")
    d.add_argument("--by", metavar="NAME", required=True, help="the supervisor disabling it")
    d.add_argument("--reason", required=True, help="why (kept in the store)")
    add_users_file(d)
    d.set_defaults(func=run_disable)
    s = usub.add_parser("list", help="list the users and their roles")
    s.add_argument("--json", action="store_true", help="print them as a JSON list")
    add_users_file(s)
    s.set_defaults(func=run_list)


def _store(args):
    from host.users import UserStore, default_store_path  # lazy: start-up (argon2)

    return UserStore(args.users_file or default_store_path())


def _supervisor(store, name: str | None, action: str) -> str | None:
    """Authenticate ``name`` as a supervisor of ``store`` (its name), None when the store
    is empty (the first user adds itself); UserError otherwise."""
    from host.users import USER_ADMIN_ROLES, UserError, read_password  # lazy: start-up

    if not store.users:
        return None
    if not name:
        raise UserError(f"{action} needs --by NAME: a supervisor of {store.path}")
    password = read_password(f"password for {name}: ")
    store.authenticate(name, password, USER_ADMIN_ROLES)
    return name


def run_add(args) -> int:
    from host.users import UserError, read_password  # lazy: start-up

    try:
        store = _store(args)
        by = _supervisor(store, args.by, "adding a user")
        # The new user's password: asked twice (or $SKID_NEW_PASSWORD for scripts, since
        # $SKID_PASSWORD is the supervisor's).
        env = {"SKID_PASSWORD": os.environ.get("SKID_NEW_PASSWORD", "")}
        password = read_password(f"new password for {args.name}: ", env, confirm=True)
        store.add(args.name, args.role, password, args.full_name, by)
    except UserError as exc:
        print(f"skid user add: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"skid user add: {args.name} ({args.role}) added to {store.path}")
    return EXIT_OK


def run_disable(args) -> int:
    from host.users import UserError  # lazy: start-up

    try:
        store = _store(args)
        by = _supervisor(store, args.by, "disabling a user")
        store.disable(args.name, by or "", args.reason)
    except UserError as exc:
        print(f"skid user disable: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"skid user disable: {args.name} disabled in {store.path}")
    return EXIT_OK


def run_list(args) -> int:
    from host.users import UserError  # lazy: start-up

    try:
        store = _store(args)
    except UserError as exc:
        print(f"skid user list: {exc}", file=sys.stderr)
        return EXIT_USAGE
    users = store.listing()
    if args.json:
        print(json.dumps(users, sort_keys=True))
        return EXIT_OK
    if not users:
        print(f"no users in {store.path}")
        return EXIT_OK
    for u in users:
        state = "active" if u.get("active") else f"disabled {u.get('disabled_utc', '')}"
        print(f"{u['name']:<16} {u['role']:<10} {state:<28} {u.get('full_name', '')}")
    return EXIT_OK
