"""Where each key of a TOML document is: dotted path -> 1-based line number.

``tomllib`` returns values without positions, so error messages find their line by
scanning the text once more.  The scanner understands what a valid TOML document can
contain (tables, arrays of tables, dotted and quoted keys, inline tables, multi-line
arrays and strings) and records:

* ``channels.heater`` for a ``[channels.heater]`` header (its line),
* ``interlocks[2]`` for the third ``[[interlocks]]`` header,
* ``channels.heater.safe`` for a ``safe = ...`` line inside that table,
* ``channels.x.calibration.points[3]`` for an element of an array, and keys inside
  inline tables.

``line_of(index, path)`` falls back to the nearest recorded parent, so a missing key
points at its table header.  The document is parsed by tomllib first; if the scanner
meets something it does not understand it stops and keeps what it found.
"""

from __future__ import annotations

_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    def __init__(self, text):
        self.s = text
        self.i = 0
        self.line = 1
        self.index = {}
        self.aot = {}  # array-of-tables path -> last index

    # -- low level ------------------------------------------------------------------------
    def peek(self, k=0):
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def advance(self, n=1):
        for _ in range(n):
            if self.i < len(self.s):
                if self.s[self.i] == "\n":
                    self.line += 1
                self.i += 1

    def skip_ws(self, newlines):
        while True:
            c = self.peek()
            if c in (" ", "\t", "\r") or (newlines and c == "\n"):
                self.advance()
            elif c == "#":
                while self.peek() not in ("\n", ""):
                    self.advance()
            else:
                return

    def record(self, path, line):
        self.index.setdefault(path, line)

    # -- keys -----------------------------------------------------------------------------
    def key_part(self):
        c = self.peek()
        if c == '"' or c == "'":
            return self.string()
        start = self.i
        while self.peek() in _BARE and self.peek() != "":
            self.advance()
        if self.i == start:
            raise ValueError("key expected at line {}".format(self.line))
        return self.s[start : self.i]

    def dotted_key(self):
        parts = [self.key_part()]
        while True:
            self.skip_ws(False)
            if self.peek() != ".":
                return parts
            self.advance()
            self.skip_ws(False)
            parts.append(self.key_part())

    # -- values ---------------------------------------------------------------------------
    def string(self):
        q = self.peek()
        if self.s.startswith(q * 3, self.i):
            self.advance(3)
            end = self.s.index(q * 3, self.i)
            # a multi-line string may end with up to two extra quotes
            while self.s.startswith(q, end + 3):
                end += 1
            text = self.s[self.i : end]
            self.advance(end + 3 - self.i)
            return text
        self.advance()
        out = []
        while True:
            c = self.peek()
            if c == "":
                raise ValueError("unterminated string")
            if c == q:
                self.advance()
                return "".join(out)
            if c == "\\" and q == '"':
                out.append(self.s[self.i : self.i + 2])
                self.advance(2)
                continue
            out.append(c)
            self.advance()

    def value(self, path):
        c = self.peek()
        if c == '"' or c == "'":
            self.string()
        elif c == "[":
            self.advance()
            n = 0
            while True:
                self.skip_ws(True)
                if self.peek() == "]":
                    self.advance()
                    return
                self.record("{}[{}]".format(path, n), self.line)
                self.value("{}[{}]".format(path, n))
                n += 1
                self.skip_ws(True)
                if self.peek() == ",":
                    self.advance()
        elif c == "{":
            self.advance()
            while True:
                self.skip_ws(False)
                if self.peek() == "}":
                    self.advance()
                    return
                self.keyval(path)
                self.skip_ws(False)
                if self.peek() == ",":
                    self.advance()
        else:
            while self.peek() not in (",", "]", "}", "\n", "#", ""):
                self.advance()

    def keyval(self, prefix):
        line = self.line
        parts = self.dotted_key()
        path = prefix
        for p in parts:
            path = path + "." + p if path else p
            self.record(path, line)
        self.skip_ws(False)
        if self.peek() != "=":
            raise ValueError("'=' expected at line {}".format(self.line))
        self.advance()
        self.skip_ws(False)
        self.value(path)

    # -- document -------------------------------------------------------------------------
    def resolve(self, parts):
        # A path through arrays of tables goes to their latest element.
        path = ""
        for p in parts:
            path = path + "." + p if path else p
            if path in self.aot:
                path = "{}[{}]".format(path, self.aot[path])
        return path

    def document(self):
        prefix = ""
        while True:
            self.skip_ws(True)
            c = self.peek()
            if c == "":
                return
            line = self.line
            if c == "[":
                array = self.peek(1) == "["
                self.advance(2 if array else 1)
                self.skip_ws(False)
                parts = self.dotted_key()
                self.skip_ws(False)
                self.advance(2 if array else 1)
                if array:
                    base = self.resolve(parts[:-1])
                    base = base + "." + parts[-1] if base else parts[-1]
                    n = self.aot.get(base, -1) + 1
                    self.aot[base] = n
                    prefix = "{}[{}]".format(base, n)
                    self.record(base, line)
                else:
                    prefix = self.resolve(parts)
                self.record(prefix, line)
            else:
                self.keyval(prefix)


def index_lines(text):
    """Dotted path -> line number for every key, header and array element found."""
    sc = _Scanner(text)
    try:
        sc.document()
    except (ValueError, IndexError):
        pass  # keep what was found; tomllib already judged the syntax
    return sc.index


def line_of(index, path):
    """Line of ``path`` or of its nearest recorded parent; None if nothing matches."""
    while path:
        if path in index:
            return index[path]
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            return None
        path = path[:cut]
    return None
