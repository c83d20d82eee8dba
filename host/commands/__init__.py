"""The ``skid`` sub-commands, one module each (discovered by ``host/cli.py``).

Every command module is imported to build the parser, so ``skid --help`` (and every
command) pays for the top-level imports of all of them.  A command module therefore
imports at its top only what is cheap or already loaded when the parser is built
(``edge.boardconfig``, ``protocol``, the small host modules).  Modules that cost
milliseconds to import (``host.record``, ``host.report``, ``host.recipe``,
``host.linecheck``, ``line.loader``, ``host.registry``, ``host.transport``,
``host.control``, ``rich``) are imported inside the function that runs the command, each
marked ``# lazy: start-up``: only the command that uses them pays.
"""
