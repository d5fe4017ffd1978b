"""Turn module runs into the summary, the console report and results/<loop>.{json,md}."""

from __future__ import annotations

import datetime
import json
import platform
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import harness

# status of a test once the expected-failure file is taken into account
PASSED, FAILED, XFAIL, XPASS, SKIPPED = "passed", "failed", "xfail", "xpass", "skipped"


def short_id(test_id: str) -> str:
    return test_id.removeprefix("test.test_asyncio.")


def _module_of(test_id: str) -> str:
    """test.test_asyncio.test_events.Class.test -> test_events"""
    return test_id.removeprefix("test.test_asyncio.").partition(".")[0]


def _status(record, listed) -> str:
    outcome, is_listed = record["outcome"], record["id"] in listed
    if outcome == "failed":
        return XFAIL if is_listed else FAILED
    if outcome == "passed":
        return XPASS if is_listed else PASSED
    return SKIPPED


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0  # expected or not
    xfail: int = 0  # of which expected (listed)
    skipped: int = 0

    def add(self, status):
        if status in (PASSED, XPASS):
            self.passed += 1
        elif status in (FAILED, XFAIL):
            self.failed += 1
            self.xfail += status == XFAIL
        else:
            self.skipped += 1

    @property
    def total(self):
        return self.passed + self.failed + self.skipped

    def line(self):
        """The closing line. Like pytest's xfailed, listed (expected) failures are not
        counted as failed here; `xfail_note` reports them."""
        return f"{self.passed} passed, {self.failed - self.xfail} failed, {self.skipped} skipped"

    def xfail_note(self):
        if not self.xfail:
            return ""
        return f"{self.xfail} expected failure{'s' if self.xfail != 1 else ''} (listed in the expected-failure file)"


@dataclass
class Summary:
    loop: str
    description: str
    partial: bool
    duration: float
    options: dict
    xfail_path: str | None
    date: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    )
    tests: list = field(default_factory=list)
    modules: list = field(default_factory=list)
    generic: Counts = field(default_factory=Counts)
    internal: Counts = field(default_factory=Counts)
    unexpected_failures: list = field(default_factory=list)
    unexpected_passes: list = field(default_factory=list)
    listed_skipped: list = field(default_factory=list)
    stale_entries: list = field(default_factory=list)
    broken_modules: list = field(default_factory=list)

    @classmethod
    def build(cls, *, loop, description, runs, listed, xfail_path, partial, duration, options):
        summary = cls(
            loop, description, partial, duration, options, str(xfail_path) if xfail_path else None
        )
        order = {m: i for i, m in enumerate(options["modules"])}
        seen = set()
        for run in sorted(runs, key=lambda r: order.get(r.name, 0)):
            row = {
                "module": run.name,
                "generic": Counts(),
                "internal": Counts(),
                "duration": round(run.duration, 1),
                "attempts": run.attempts,
                "note": harness.HOOKS.get(run.name, harness.ModuleHooks()).note,
            }
            if run.skipped_reason is not None:
                row["note"] = f"skipped: {run.skipped_reason}"
            if run.error:
                row["note"] = f"ERROR: {run.error}"
                summary.broken_modules.append(
                    {"module": run.name, "error": run.error, "detail": run.error_detail}
                )
            for record in run.tests.values():
                seen.add(record["id"])
                status = _status(record, listed)
                record = dict(record, status=status)
                entry = listed.get(record["id"])
                if entry:
                    record["expected"] = {
                        "category": entry.category,
                        "reason": entry.reason,
                        "issue": entry.issue,
                    }
                if status in (PASSED, XPASS):
                    record["detail"] = ""  # the tracebacks of @expectedFailure tests
                bucket = "generic" if record["generic"] else "internal"
                row[bucket].add(status)
                getattr(summary, bucket).add(status)
                summary.tests.append(record)
                if status == FAILED:
                    summary.unexpected_failures.append(record)
                elif status == XPASS:
                    summary.unexpected_passes.append(record)
                elif status == SKIPPED and entry:
                    summary.listed_skipped.append(record)
            for fixture in run.fixtures:
                if fixture["outcome"] != "failed":
                    continue
                seen.add(fixture["id"])
                record = {
                    "id": fixture["id"],
                    "module": run.name,
                    "outcome": "failed",
                    "kind": "fixture",
                    "generic": False,
                    "loops": None,
                    "duration": 0.0,
                    "message": fixture["message"],
                    "detail": fixture["detail"],
                }
                record["status"] = _status(record, listed)
                summary.tests.append(record)
                if record["status"] == FAILED:
                    summary.unexpected_failures.append(record)
            summary.modules.append(row)
        if not partial:
            # Only a module that ran to the end can show that a test is gone.
            broken = {b["module"] for b in summary.broken_modules}
            summary.stale_entries = [
                e for tid, e in listed.items() if tid not in seen and _module_of(tid) not in broken
            ]
        summary.tests.sort(key=lambda r: (order.get(r["module"], 0), r["id"]))
        return summary

    def headline(self) -> str:
        note = self.generic.xfail_note()
        return self.generic.line() + (f"; {note}" if note else "")

    def to_json(self) -> dict:
        def counts(c: Counts):
            return {
                "passed": c.passed,
                "failed": c.failed,
                "expected_failures": c.xfail,
                "skipped": c.skipped,
                "total": c.total,
            }

        return {
            "loop": self.loop,
            "loop_description": self.description,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "date": self.date,
            "duration_s": round(self.duration, 1),
            "partial": self.partial,
            "options": self.options,
            "expected_failures_file": self.xfail_path,
            "headline": self.headline(),
            "generic": counts(self.generic),
            "internal": counts(self.internal),
            "unexpected_failures": [r["id"] for r in self.unexpected_failures],
            "unexpected_passes": [r["id"] for r in self.unexpected_passes],
            "stale_expected_failures": [e.test_id for e in self.stale_entries],
            "broken_modules": self.broken_modules,
            "modules": [
                dict(row, generic=counts(row["generic"]), internal=counts(row["internal"]))
                for row in self.modules
            ],
            "tests": self.tests,
        }


# ------------------------------------------------------------------ console
def progress_line(run, done: int, total: int) -> str:
    generic, internal = Counts(), Counts()
    for record in run.tests.values():
        status = (
            PASSED
            if record["outcome"] == "passed"
            else (FAILED if record["outcome"] == "failed" else SKIPPED)
        )
        (generic if record["generic"] else internal).add(status)
    width = len(str(total))
    text = (
        f"[{done:{width}}/{total}] {run.name:<22} generic: {generic.line():<34} "
        f"internal: {internal.total:<4} {run.duration:6.1f}s"
    )
    if run.attempts > 1:
        text += f"  ({run.attempts - 1} restart(s) after a hang/crash)"
    if run.skipped_reason is not None:
        text += "  module skipped"
    if run.error:
        text += f"  ERROR: {run.error}"
    return text


_TABLE_HEADER = (
    "module",
    "generic",
    "passed",
    "failed",
    "expected",
    "skipped",
    "internal",
    "int. failed",
    "seconds",
)


def _table_row(name, g: Counts, i: Counts, seconds: float) -> list[str]:
    cells = (
        name,
        g.total,
        g.passed,
        g.failed,
        g.xfail,
        g.skipped,
        i.total,
        i.failed,
        f"{seconds:.1f}",
    )
    return [str(c) for c in cells]


def module_table(summary: Summary, markdown: bool) -> str:
    rows = [
        _table_row(r["module"], r["generic"], r["internal"], r["duration"]) for r in summary.modules
    ]
    total = _table_row("total", summary.generic, summary.internal, summary.duration)
    if markdown:
        notes = [md_cell(r["note"]) for r in summary.modules]
        lines = [
            "| " + " | ".join(_TABLE_HEADER) + " | note |",
            "|---" + "|---:" * (len(_TABLE_HEADER) - 1) + "|---|",
        ]
        lines += ["| " + " | ".join(row) + f" | {note} |" for row, note in zip(rows, notes, strict=True)]
        lines.append("| " + " | ".join(f"**{c}**" for c in total) + " | |")
        return "\n".join(lines)
    cells = [list(_TABLE_HEADER), *rows, total]
    widths = [max(len(r[c]) for r in cells) for c in range(len(_TABLE_HEADER))]

    def fmt(r):
        return "  ".join(
            r[0].ljust(widths[0]) if c == 0 else r[c].rjust(widths[c]) for c in range(len(r))
        )

    rule = fmt(["-" * w for w in widths])
    return "\n".join([fmt(_TABLE_HEADER), rule, *map(fmt, rows), rule, fmt(total)])


def md_cell(text: str) -> str:
    """Text made safe for one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _broken_by_cause(summary: Summary) -> dict:
    """Modules broken the same way (say, the loop does not import) go together."""
    by_cause = defaultdict(list)
    for broken in summary.broken_modules:
        by_cause[(broken["error"], broken["detail"])].append(broken["module"])
    return by_cause


def console_report(summary: Summary, verbose=False) -> str:
    out = [module_table(summary, markdown=False), ""]
    out.append(
        f"generic tests (ran on {summary.loop}): {summary.generic.line()}"
        f" ({summary.generic.xfail} of the failures expected)"
    )
    out.append(
        f"internal tests (asyncio's own classes, mocks, TestLoop; not counted): "
        f"{summary.internal.line()}"
    )
    for (error, detail), modules in _broken_by_cause(summary).items():
        out.append(f"\nMODULE ERROR in {', '.join(modules)}: {error}\n{detail}")
    if summary.unexpected_failures:
        out.append(
            f"\nUNEXPECTED FAILURES ({len(summary.unexpected_failures)}) -- "
            "fix them or list them in the expected-failure file:"
        )
        for r in summary.unexpected_failures:
            scope = "" if r["generic"] else " [internal]"
            out.append(f"  {r['id']}{scope}  [{r['kind']}] {r['message']}")
            if verbose:
                out.append("    " + r["detail"].replace("\n", "\n    "))
    if summary.unexpected_passes:
        out.append(
            f"\n!!! {len(summary.unexpected_passes)} LISTED TEST(S) NOW PASS -- "
            f"remove their lines from {summary.xfail_path}:"
        )
        out += [f"  {r['id']}" for r in summary.unexpected_passes]
    if summary.listed_skipped:
        out.append(
            f"\nlisted as expected failures but skipped here ({len(summary.listed_skipped)}):"
        )
        out += [f"  {r['id']}" for r in summary.listed_skipped]
    if summary.stale_entries:
        out.append(f"\nlines of {summary.xfail_path} for tests this Python's suite does not run:")
        out += [f"  line {e.line}: {e.test_id}" for e in summary.stale_entries]
    return "\n".join(out)


# ------------------------------------------------------------------ results
def markdown_report(summary: Summary) -> str:
    data = summary.to_json()
    out = [
        f"# test_asyncio on {summary.loop}",
        "",
        f"- loop: {summary.description}",
        f"- Python {data['python']} on {data['platform']}",
        (
            f"- date: {data['date']}, {data['duration_s']} s, {summary.options['jobs']} jobs, "
            f"{summary.options['timeout']:g} s per test"
        ),
        f"- expected-failure file: {summary.xfail_path or 'none'}",
    ]
    if summary.partial:
        out.append(
            f"- partial run: modules {', '.join(summary.options['modules'])}"
            + (f", patterns {summary.options['patterns']}" if summary.options["patterns"] else "")
        )
    out += [
        "",
        "Generic tests (they built a loop through the harness):",
        "",
        "```",
        summary.headline(),
        "```",
        "",
        (
            "Internal tests (asyncio's own classes, mocks, the virtual-time TestLoop), not "
            f"counted above: {summary.internal.line()}."
        ),
        "",
        "## Per module",
        "",
        module_table(summary, markdown=True),
        "",
    ]

    def failure_rows(records, with_reason):
        rows = [
            "| test | kind | " + ("category | reason | issue |" if with_reason else "error |"),
            "|---|---|" + ("---|---|---|" if with_reason else "---|"),
        ]
        for r in records:
            scope = "" if r["generic"] else " (internal)"
            if with_reason:
                e = r["expected"]
                cols = [e["category"], e["reason"], e["issue"]]
            else:
                cols = [r["message"]]
            cols = [md_cell(c) for c in cols]
            rows.append(
                f"| `{short_id(r['id'])}`{scope} | {r['kind']} | " + " | ".join(cols) + " |"
            )
        return rows

    if summary.broken_modules:
        out += ["## Modules that did not run", ""]
        for (error, detail), modules in _broken_by_cause(summary).items():
            out += [f"### {', '.join(modules)}", "", error, "", "```", detail.strip(), "```", ""]
    if summary.unexpected_failures:
        out += [f"## Unexpected failures ({len(summary.unexpected_failures)})", ""]
        out += failure_rows(summary.unexpected_failures, with_reason=False) + [""]
    xfails = [r for r in summary.tests if r["status"] == XFAIL]
    if xfails:
        out += [f"## Expected failures ({len(xfails)})", ""]
        by_category = Counter(r["expected"]["category"] for r in xfails)
        out += [", ".join(f"{c}: {n}" for c, n in by_category.most_common()), ""]
        out += failure_rows(xfails, with_reason=True) + [""]
    if summary.unexpected_passes:
        out += [
            f"## Listed but passing ({len(summary.unexpected_passes)})",
            "",
            "Remove these lines from the expected-failure file:",
            "",
        ]
        out += [f"- `{r['id']}`" for r in summary.unexpected_passes] + [""]

    internal_by_class = defaultdict(Counts)
    for r in summary.tests:
        if not r["generic"] and r["kind"] != "fixture":
            internal_by_class[r["id"].rpartition(".")[0]].add(r["status"])
    if internal_by_class:
        out += [
            "## Internal tests by class",
            "",
            "| class | tests | passed | failed | skipped |",
            "|---|---:|---:|---:|---:|",
        ]
        for cls, c in sorted(internal_by_class.items()):
            out.append(f"| `{short_id(cls)}` | {c.total} | {c.passed} | {c.failed} | {c.skipped} |")
        out.append("")
    return "\n".join(out)


def draft_entry(record) -> str:
    """A starting point for a record's expected-failure line; a person finishes it."""
    category, reason = "behaviour", record["message"]
    detail = record["detail"]
    stub = re.search(
        r'asyncio/events\.py", line \d+, in (\w+)\n\s+raise NotImplementedError', detail
    )
    private = re.search(r"AttributeError: '\w+' object has no attribute '(_\w+)'", detail)
    if record["kind"] in ("timeout", "crash", "not-run"):
        category = record["kind"]
    elif stub:
        category, reason = "not-implemented", f"loop.{stub.group(1)}() is not implemented"
    elif private:
        category = "private-api"
        reason = f"the test uses {private.group(1)}, a private attribute of asyncio's loops"
    reason = reason.replace("|", "/") or "TODO: say why"
    return f"{record['id']} | {category} | {reason}"


def write_draft(summary: Summary, path: Path) -> None:
    lines = [draft_entry(r) for r in summary.unexpected_failures]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_results(summary: Summary, results_dir: Path, stem: str):
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{stem}.json"
    md_path = results_dir / f"{stem}.md"
    json_path.write_text(_dump_json(summary.to_json()), encoding="utf-8")
    md_path.write_text(markdown_report(summary), encoding="utf-8")
    return json_path, md_path


def _dump_json(data: dict) -> str:
    """Indented, except one line per test (empty fields left out): small, and
    diffs well between runs."""
    tests = data.pop("tests")
    head = json.dumps(data, indent=1)
    body = ",\n".join(
        "  " + json.dumps({k: v for k, v in t.items() if v not in ("", None)}) for t in tests
    )
    return f'{head[:-2]},\n "tests": [\n{body}\n ]\n}}\n'
