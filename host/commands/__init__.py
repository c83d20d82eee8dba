"""One module per `skid` sub-command; each defines ``register(subparsers)``."""
