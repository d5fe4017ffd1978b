"""The expected-failure file: tests known to fail on the loop under test.

One line per test::

    <test id> | <category> | <reason> | <issue>

e.g.::

    test.test_asyncio.test_streams.StreamTests.test_foo | streams | readuntil() ignores the limit | #3 streams

The issue column names the open issue that will fix it; it may be left out
(``<test id> | <category> | <reason>``) while nobody has filed one.  Blank
lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    test_id: str
    category: str
    reason: str
    issue: str
    line: int


class ExpectedFailuresError(Exception):
    pass


def load(path) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = [part.strip() for part in line.split("|")]
            if len(fields) not in (3, 4) or not all(fields[:3]):
                raise ExpectedFailuresError(
                    f"{path}:{lineno}: expected "
                    f"'<test id> | <category> | <reason> [| <issue>]', got: {line!r}"
                )
            test_id, category, reason = fields[:3]
            issue = fields[3] if len(fields) == 4 else ""
            if test_id in entries:
                raise ExpectedFailuresError(
                    f"{path}:{lineno}: {test_id} is already listed on line {entries[test_id].line}"
                )
            entries[test_id] = Entry(test_id, category, reason, issue, lineno)
    return entries
