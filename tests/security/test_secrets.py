"""No secret in the repository: every file git tracks (or would add: untracked, not ignored) is
scanned for private keys, API-key shaped strings, passwords in URLs, a hard-coded SECRET_KEY
other than the marked development default, and till keys (djangorestframework-api-key's
`<prefix>.<secret>`).

The scanner is shown to catch each kind on planted samples; the samples are assembled at run
time so that this file does not trip the scan itself.
"""

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from coalition.settings.base import DEV_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]

# Stand-ins that documentation and tests use where a password goes in a URL.
PLACEHOLDER_PASSWORDS = {"pass", "password", "pw", "secret", "x", "changeme", "***"}

PATTERNS: dict[str, re.Pattern[str]] = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "assigned API key or token": re.compile(
        r"""(?i)\b(?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)"""
        r"""\s*[:=]\s*["'][A-Za-z0-9_\-+/=]{20,}["']"""
    ),
    "till key": re.compile(r"(?<![\w.])[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}(?![\w.])"),
}
PASSWORD_IN_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"<>]+:([^\s/@'\"<>]+)@")
SECRET_KEY_ASSIGNED = re.compile(r"""(?<![A-Za-z0-9])SECRET_KEY\s*[:=]\s*["']?([^\s"',)]+)""")


def findings_in(text: str) -> Iterable[str]:
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            yield f"{kind}: {match.group(0)[:24]}..."
    for match in PASSWORD_IN_URL.finditer(text):
        password = match.group(1)
        if password.lower() not in PLACEHOLDER_PASSWORDS and not password.startswith(("$", "{")):
            yield f"password in a URL: {match.group(0)[:40]}..."
    for match in SECRET_KEY_ASSIGNED.finditer(text):
        value = match.group(1)
        # The marked development default, or a value read from elsewhere (env(...), $VAR).
        if value == DEV_SECRET_KEY or not value[:1].isalnum() or re.match(r"^\w+\(", value):
            continue
        if value in {"DEV_SECRET_KEY", "env", "os"} or value.startswith(("env(", "os.")):
            continue
        yield f"hard-coded SECRET_KEY: {value[:12]}..."


def scan(paths: Iterable[Path]) -> list[str]:
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue  # binary files (the screenshot), or deleted in the working tree
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        found += [f"{shown}: {finding}" for finding in findings_in(text)]
    return found


def repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [ROOT / name for name in listed.split("\0") if name]


def test_the_repository_holds_no_secret() -> None:
    files = repository_files()
    assert len(files) > 100  # the listing worked: the whole project, not an empty tree
    assert ROOT / "coalition/settings/base.py" in files
    found = scan(files)
    assert found == [], "\n".join(found)


def planted() -> dict[str, str]:
    """One sample of each kind, assembled here so this file holds none of them whole."""
    dashes = "-" * 5
    return {
        "private key": f"{dashes}BEGIN RSA PRIVATE KEY{dashes}\nMIIEow...\n",
        "AWS access key": "aws = '" + "AKIA" + "IOSFODNN7EXAMPLE" + "'",
        "GitHub token": "token: " + "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "assigned API key or token": "API_KEY = '" + "Zx81kQ2mW7pL0aB9cD4eF6gH" + "'",
        "till key": "curl -H 'Authorization: Api-Key "
        + "Ab3dE5gH"
        + "."
        + "q1W2e3R4t5Y6u7I8o9P0a1S2d3F4g5H6"
        + "'",
        "password in a URL": "DATABASE_URL=postgres://loyalty:" + "Tr0ub4dor&3" + "@db:5432/x",
        "hard-coded SECRET_KEY": "SECRET_" + "KEY = 'k8#xq!v2" + "p0w9z7'",
    }


@pytest.mark.parametrize("kind", list(planted()))
def test_the_scan_catches_a_planted_secret(kind: str, tmp_path: Path) -> None:
    leak = tmp_path / "notes.md"
    leak.write_text(f"Some notes\n{planted()[kind]}\nmore notes\n")
    clean = tmp_path / "clean.md"
    clean.write_text(
        "DATABASE_URL=postgres://postgres@127.0.0.1:5432/coalition\n"
        "EMAIL_URL=smtp+tls://user:pass@host:587\n"
        'SECRET_KEY = env("SECRET_KEY")\n'
        "Authorization: Api-Key $KEY\n"
    )
    found = scan([leak, clean])

    assert any(finding.startswith(f"{leak}: {kind}") for finding in found), found
    assert not [finding for finding in found if finding.startswith(str(clean))], found
