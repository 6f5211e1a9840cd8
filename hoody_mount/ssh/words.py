"""A built-in's command line split into words as a POSIX shell splits it (no shell runs).

Single quotes keep everything; a backslash outside quotes keeps the next character; in
double quotes it escapes only ``$``, `````, ``"``, ``\\`` and a newline. ``$NAME`` and
``${...}`` outside single quotes expand to nothing (no variable is set here), and a word
left empty by them alone is dropped; a quoted or escaped ``$`` is a ``$``. Each word
remembers its unquoted ``*``, ``?`` and ``[``: only those make a pattern. Operators
(``; | & < > ( )``, a newline between commands) and command substitutions are refused.
``shlex`` cannot do this: it keeps the backslash of ``"\\$"`` and forgets what was quoted.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN = re.compile(r"[^ \t\n;|&<>()`#\\'\"$*?\[]+")
_QUOTED_PLAIN = re.compile(r'[^"`$\\]+')
_OPERATORS = frozenset(";|&<>()")
_BLANKS = frozenset(" \t\n")
_WILD = frozenset("*?[")
_DOUBLE_ESCAPES = frozenset('$`"\\\n')


class Refused(ValueError):
    """A line a shell would run as more than one simple command, or a substitution."""


@dataclass(frozen=True)
class Word:
    """One word after quote removal, and where its unquoted ``*``, ``?``, ``[`` are."""

    text: str
    wild: frozenset[int] = frozenset()

    def pattern(self, start: int = 0) -> str:
        """``text[start:]`` for ``fnmatch``: its quoted ``*?[`` escaped (``[*]``)."""
        return "".join(
            f"[{c}]" if c in _WILD and i not in self.wild else c
            for i, c in enumerate(self.text[start:], start)
        )


class _Splitter:
    def __init__(self, line: str) -> None:
        self.line, self.at = line, 0
        self.words: list[Word] = []
        self.chars: list[str] = []  # (pieces of the word; ``length`` characters in all)
        self.length = 0
        self.wild: set[int] = set()
        self.started = False  # (a quote or a literal character: the word exists, even empty)
        self.ended = False  # (an unquoted newline: any further word is a second command)

    def add(self, text: str, quoted: bool) -> None:
        if not quoted and text in _WILD:
            self.wild.add(self.length)
        self.chars.append(text)
        self.length += len(text)
        self.started = True

    def finish_word(self) -> None:
        if self.started:
            if self.ended:
                raise Refused("more than one command")
            self.words.append(Word("".join(self.chars), frozenset(self.wild)))
        self.chars, self.wild, self.length, self.started = [], set(), 0, False

    def dollar(self) -> None:
        """At a ``$``: a variable (nothing), a substitution (refused) or a plain ``$``."""
        line, after = self.line, self.at + 1  # (no copy of the rest: a line of $s stays linear)
        if line.startswith("(", after):
            raise Refused("a command substitution")
        if line.startswith("{", after):
            end = line.find("}", after)
            if end < 0:
                raise ValueError("an unclosed ${")
            self.at = end + 1
            return
        name = _NAME.match(line, after)
        if name:
            self.at = name.end()
            return
        self.at += 1
        self.add("$", True)

    def double_quoted(self) -> None:
        self.at += 1
        self.started = True
        while True:
            if self.at >= len(self.line):
                raise ValueError('an unmatched "')
            c = self.line[self.at]
            if c == '"':
                self.at += 1
                return
            if c == "`":
                raise Refused("a command substitution")
            if c == "$":
                self.dollar()
                continue
            nxt = self.line[self.at + 1 : self.at + 2]
            if c == "\\" and nxt in _DOUBLE_ESCAPES:
                self.add(nxt if nxt != "\n" else "", True)
                self.at += 2
                continue
            plain = _QUOTED_PLAIN.match(self.line, self.at)
            self.add(plain.group() if plain else c, True)
            self.at = plain.end() if plain else self.at + 1

    def split(self) -> list[Word]:
        line, fresh = self.line, True  # (fresh: after a word's end, where # is a comment)
        while self.at < len(line):
            c, was_fresh, fresh = line[self.at], fresh, False
            if c in _BLANKS:
                self.finish_word()
                self.ended |= c == "\n"
                self.at += 1
                fresh = True
            elif c in _OPERATORS:
                raise Refused(f"the operator {c}")
            elif c == "`":
                raise Refused("a command substitution")
            elif c == "#" and was_fresh:
                end = line.find("\n", self.at)
                self.at = len(line) if end < 0 else end
            elif c == "\\":
                nxt = line[self.at + 1 : self.at + 2]
                if nxt != "\n":
                    self.add(nxt or "\\", True)
                self.at += 2
            elif c == "'":
                end = line.find("'", self.at + 1)
                if end < 0:
                    raise ValueError("an unmatched '")
                self.add(line[self.at + 1 : end], True)
                self.at = end + 1
            elif c == '"':
                self.double_quoted()
            elif c == "$":
                self.dollar()
            else:
                plain = _PLAIN.match(line, self.at)  # (a run at once; *?[ one at a time)
                self.add(plain.group() if plain else c, False)
                self.at = plain.end() if plain else self.at + 1
        self.finish_word()
        return self.words


def split(line: str) -> list[Word]:
    """The words of one simple command; ``Refused`` for operators and substitutions,
    ``ValueError`` for an unmatched quote."""
    return _Splitter(line).split()


def requoted(line: str) -> str:
    """The line's words quoted again so that ``shlex.split`` gives them back exactly
    (for asyncssh's scp server, which splits with ``shlex``)."""
    return shlex.join(word.text for word in split(line))
