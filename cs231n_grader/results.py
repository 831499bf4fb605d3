"""What grading a test produces: one ``CaseResult`` per case while comparing, one
``TestResult`` per test in the report, and the verdicts they carry."""

from __future__ import annotations

from dataclasses import dataclass, field

from cs231n_grader.compare import Cmp

VERDICTS = ("pass", "fail", "error", "timeout", "crash", "not run", "missing", "skipped")
# When cases of one test fail in different ways, the test's verdict is the first of these.
SEVERITY = ("timeout", "crash", "error", "fail", "not run", "missing")


@dataclass
class TestResult:
    name: str
    item: str
    file: str
    verdict: str
    max_rel_error: float | None = None
    hint: str = ""
    details: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    cases_passed: int = 0
    cases_total: int = 0
    output: str = ""  # what the student's code printed, when it errored
    # Robustness extras the code misses (an input modified in place, overflow on huge logits):
    # reported, and worth a configurable deduction, but never a failure.
    robustness: list = field(default_factory=list)
    points: float | None = None  # the assignment profile's points for this test, if any
    cases: list = field(default_factory=list)  # per case: label, status, max_rel_error, ...

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


@dataclass
class CaseResult:
    label: str
    index: int
    meta: dict
    status: str = "pass"  # 'pass', one of SEVERITY, or 'skipped' (the reference failed)
    err: float | None = None
    messages: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    cmps: list = field(default_factory=list)
    diagnosis: str = ""
    skip_reason: str = ""
    robustness: list = field(default_factory=list)  # see TestResult.robustness

    def fail(self, message: str, status: str = "fail") -> None:
        if self.status == "pass" or (
            status in SEVERITY
            and self.status in SEVERITY
            and SEVERITY.index(status) < SEVERITY.index(self.status)
        ):
            self.status = status
        self.messages.append(message)

    def add(self, cmp: Cmp) -> Cmp:
        self.cmps.append(cmp)
        if cmp.err is not None:
            self.err = cmp.err if self.err is None else max(self.err, cmp.err)
        if not cmp.ok:
            self.fail(cmp.message)
        return cmp

    @property
    def value_only(self) -> bool:
        """Failed only because numbers differ (not an exception, a shape, a type, a NaN)."""
        bad = [c for c in self.cmps if not c.ok]
        return (
            self.status == "fail"
            and bool(bad)
            and all(c.kind == "value" for c in bad)
            and len(bad) == len(self.messages)
        )
