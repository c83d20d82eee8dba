"""``python -m edge.boardconfig [--emulate] [--dump] FILE...``: validate board configs and
print each one's compiled size and config hash (exit status 1 if any file is invalid).

``python -m edge.boardconfig --write-doc`` regenerates the key tables of
docs/board-config.md from the schema.
"""

from __future__ import annotations

import pprint
import sys
from pathlib import Path

from edge.boardconfig import schema
from edge.boardconfig.compile import compile_config, config_hash
from edge.boardconfig.loader import ConfigError, emulate, load_board_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "board-config.md"


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--write-doc"]:
        DOC.write_text(schema.render_doc(DOC.read_text()))
        print("wrote", DOC)
        return 0
    emulated = "--emulate" in args
    dump = "--dump" in args
    files = [a for a in args if not a.startswith("--")]
    if not files:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    status = 0
    for f in files:
        try:
            cfg = load_board_config(f)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        if emulated:
            cfg = emulate(cfg)
        compiled = compile_config(cfg)
        print(
            "{}: {} {} ({}), {} bytes, hash {}{}".format(
                f,
                cfg.kind,
                cfg.module_id,
                cfg.target,
                len(compiled),
                config_hash(compiled).hex(),
                " [emulated]" if emulated else "",
            )
        )
        if dump:
            pprint.pprint(cfg.data, sort_dicts=False, width=100)
    return status


if __name__ == "__main__":
    sys.exit(main())
