"""`make audit`: pip-audit over the installed environment against PyPI's vulnerability data.

Fails (exit 1) on a known vulnerability that has a fixed version; vulnerabilities without a
fix are listed. pip-audit reports a package it could not look up as skipped and still says
"No known vulnerabilities found": such packages are counted and named in a warning, and with
RECSYS_REQUIRE_AUDIT_DATA=1 an audit that could not look them up fails instead of passing.
(CI does not set it: this workplace's package index serves packages but no vulnerability data,
so the audit can only warn there.)

    python -m tests.dependency_audit [--report PIP_AUDIT_JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_pip_audit() -> dict[str, Any]:
    """pip-audit's JSON report for this interpreter's environment (editable installs skipped)."""
    proc = subprocess.run([sys.executable, "-m", "pip_audit", "--skip-editable", "-f", "json",
                           "--progress-spinner", "off"], capture_output=True, text=True,
                          timeout=900, check=False)
    if not proc.stdout.strip():
        raise SystemExit(f"pip-audit failed (exit {proc.returncode}): {proc.stderr.strip()}")
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def judge(report: dict[str, Any], *, require: bool) -> tuple[int, list[str]]:
    """Exit code and the lines to print for a pip-audit JSON report."""
    lines, fixable = [], 0
    unaudited = [d for d in report["dependencies"]
                 if d.get("skip_reason") and "editable" not in d["skip_reason"]]
    for dep in report["dependencies"]:
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", []))
            fixable += bool(fixes)
            lines.append(f"{dep['name']} {dep['version']}: {vuln['id']} "
                         + (f"fixed in {fixes}" if fixes else "(no fixed version yet)"))
    code = 1 if fixable else 0
    if unaudited:
        names = ", ".join(d["name"] for d in unaudited[:5])
        lines.append(f"{'error' if require else 'warning'}: {len(unaudited)} of "
                     f"{len(report['dependencies'])} packages could not be audited (the "
                     f"index's vulnerability data did not answer for them: {names}, ...)")
        code = max(code, int(require))
    audited = sum(not d.get("skip_reason") for d in report["dependencies"])
    lines.append(f"{fixable} fixable vulnerabilities in {audited} audited packages")
    return code, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="judge this pip-audit JSON instead")
    args = parser.parse_args()
    report = json.loads(args.report.read_text()) if args.report else run_pip_audit()
    code, lines = judge(report, require=os.environ.get("RECSYS_REQUIRE_AUDIT_DATA") == "1")
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
