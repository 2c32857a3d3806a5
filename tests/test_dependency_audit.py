"""The dependency audit fails on a vulnerability with a fix, and never passes silently when
the vulnerability data could not be reached."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.dependency_audit import judge

FIXABLE = {"name": "jinja2", "version": "3.1.2", "vulns": [
    {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]}]}
UNFIXED = {"name": "somelib", "version": "1.0", "vulns": [{"id": "PYSEC-0", "fix_versions": []}]}
CLEAN = {"name": "numpy", "version": "2.4.6", "vulns": []}
SKIPPED = {"name": "pandas", "version": "3.1.1",
           "skip_reason": "Dependency not found on PyPI and could not be audited"}
EDITABLE = {"name": "recsys", "skip_reason": "distribution marked as editable"}


def test_a_fixable_vulnerability_fails() -> None:
    code, lines = judge({"dependencies": [CLEAN, FIXABLE, EDITABLE]}, require=False)
    assert code == 1
    assert "jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 fixed in 3.1.3" in lines


def test_unfixed_vulnerabilities_are_listed_but_pass() -> None:
    code, lines = judge({"dependencies": [CLEAN, UNFIXED, EDITABLE]}, require=True)
    assert code == 0
    assert "somelib 1.0: PYSEC-0 (no fixed version yet)" in lines


def test_unreachable_data_warns_or_fails_in_ci() -> None:
    report = {"dependencies": [CLEAN, SKIPPED, EDITABLE]}
    assert judge(report, require=False)[0] == 0
    code, lines = judge(report, require=True)
    assert code == 1 and lines[0].startswith("error: 1 of 3 packages could not be audited")


def test_the_script_judges_a_report(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    path.write_text(json.dumps({"dependencies": [FIXABLE]}))
    result = subprocess.run([sys.executable, "-m", "tests.dependency_audit", "--report",
                             str(path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "fixed in 3.1.3" in result.stdout
