"""sslyze against one TLS endpoint: protocols, weak ciphers, Mozilla "intermediate" compliance, the chain to a given root.

sslyze pins an older `cryptography` than ours, so it runs from a virtualenv of its own
(`make install` makes `.venv-sslyze`; the run image carries `/opt/sslyze`) as a program:
`python -m sslyze --json_out ... --mozilla_config=intermediate --certinfo_ca_file=ROOTS --sni NAME HOST:PORT`.

What comes from where:
- the JSON report: accepted protocols and cipher suites, the certificate's path validation
  against the supplied roots (sslyze validates with `cryptography`'s verifier: chain, validity
  dates and the server name together), the leaf's SANs and expiry, the HSTS header;
- the console: Mozilla's verdict. sslyze runs its compliance checker only after writing the
  JSON and prints it ("OK - Compliant." or "FAILED - Not compliant." and one "* criterion:
  complaint" line each); those complaints are kept verbatim.

"Weak" cipher suites are judged here, independently of Mozilla's list: any suite accepted
under SSL 2/3 or TLS 1.0/1.1, and under TLS 1.2 any suite without forward secrecy (no
ECDHE/DHE) or without an AEAD cipher (CBC, RC4, 3DES, NULL, EXPORT) or anonymous. TLS 1.3
suites are all AEAD with ephemeral keys. sslyze's own HSTS check is switched off upstream,
so the header's max-age is reported as found (`--http_headers`; -1 when absent), not judged.

Findings (`FINDING_COLUMNS`), one row per problem found; an empty table means none:
- `check`: protocol (an old protocol accepted), weak_cipher, mozilla_intermediate (one row per
  complaint of sslyze's checker), certificate_chain (path validation to the supplied roots
  failed), hostname (the server name is in no SAN), expiry (the leaf has expired);
- `protocol`: the TLS version concerned, or "";
- `item`: the cipher suite, criterion, subject or server name the row is about;
- `detail`: the scanner's own words, or what was found.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from shop_ops.security.checkov import ScanError

FINDING_COLUMNS = ["check", "protocol", "item", "detail"]
# sslyze's result keys, oldest first, and the names people read.
PROTOCOLS = {
    "ssl_2_0_cipher_suites": "SSLv2",
    "ssl_3_0_cipher_suites": "SSLv3",
    "tls_1_0_cipher_suites": "TLSv1.0",
    "tls_1_1_cipher_suites": "TLSv1.1",
    "tls_1_2_cipher_suites": "TLSv1.2",
    "tls_1_3_cipher_suites": "TLSv1.3",
}
LEGACY_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1")
# The trust store sslyze builds from --certinfo_ca_file.
SUPPLIED_STORE = "Supplied CA file"
_COMPLIANT = "OK - Compliant."
_NOT_COMPLIANT = "FAILED - Not compliant."
_INCOMPLETE = "ERROR - Scan did not run successfully"
_WEAK_MARKERS = ("NULL", "EXPORT", "RC4", "DES", "MD5", "_CBC_", "ANON")
_OUTPUT_SHOWN = 1500


@dataclass(frozen=True)
class TlsTarget:
    """Where to connect (`host`:`port`), the name to ask for (SNI, and the name the certificate must carry)."""

    host: str
    port: int
    server_name: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TlsScan:
    """One sslyze scan of one endpoint; `passed` is the blocking verdict (Mozilla-compliant and a valid chain)."""

    target: TlsTarget
    sslyze_version: str
    accepted_protocols: tuple[str, ...]
    weak_ciphers: tuple[str, ...]
    compliant: bool
    compliance_issues: dict[str, str]
    chain_valid: bool
    chain_error: str | None
    hostname_matches: bool
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_after: datetime
    days_to_expiry: float
    hsts_max_age: int | None
    findings: pd.DataFrame = field(compare=False)

    @property
    def legacy_protocols_refused(self) -> bool:
        """SSL 2, SSL 3, TLS 1.0 and TLS 1.1 all refused."""
        return not set(LEGACY_PROTOCOLS) & set(self.accepted_protocols)

    @property
    def passed(self) -> bool:
        return self.compliant and self.chain_valid

    def metadata(self) -> dict[str, Any]:
        return {
            "endpoint": self.target.address,
            "server_name": self.target.server_name,
            "sslyze_version": self.sslyze_version,
            "compliant": self.compliant,
            "protocols": ", ".join(self.accepted_protocols),
            "legacy_protocols_refused": self.legacy_protocols_refused,
            "weak_ciphers": len(self.weak_ciphers),
            "chain_valid": self.chain_valid,
            "hostname_matches": self.hostname_matches,
            "issuer": self.issuer,
            "not_after": self.not_after.isoformat(),
            "days_to_expiry": self.days_to_expiry,
            "hsts_max_age": self.hsts_max_age if self.hsts_max_age is not None else -1,
            "findings": len(self.findings),
        }


def parse_scan(report: Mapping[str, Any], console: str, target: TlsTarget, now: datetime | None = None) -> TlsScan:
    """sslyze's JSON report and console output for one server into a TlsScan; ScanError if it could not scan."""
    results = report.get("server_scan_results") or []
    if not results:
        invalid = report.get("invalid_server_strings") or []
        raise ScanError(f"sslyze scanned nothing for {target.address}: {invalid or 'no server result'}")
    server = results[0]
    if server.get("connectivity_status") != "COMPLETED":
        trace = (server.get("connectivity_error_trace") or "").strip().splitlines()
        raise ScanError(
            f"sslyze could not connect to {target.address} (server name {target.server_name}): "
            f"{trace[-1] if trace else server.get('connectivity_status')}; is the router running and serving TLS there?"
        )
    scan = server.get("scan_result") or {}
    rows: list[dict[str, str]] = []

    accepted: list[str] = []
    weak: list[str] = []
    for key, protocol in PROTOCOLS.items():
        suites = [s["cipher_suite"]["name"] for s in _completed(scan, key).get("accepted_cipher_suites", [])]
        if not suites:
            continue
        accepted.append(protocol)
        if protocol in LEGACY_PROTOCOLS:
            rows.append(_row("protocol", protocol, protocol, f"{protocol} accepted ({len(suites)} cipher suites)"))
        for suite in suites:
            if protocol in LEGACY_PROTOCOLS or (protocol == "TLSv1.2" and _weak_tls12(suite)):
                weak.append(suite)
                rows.append(_row("weak_cipher", protocol, suite, "no forward secrecy or no AEAD cipher"))

    verdict, issues = _compliance(console, target)
    rows += [_row("mozilla_intermediate", "", criterion, text) for criterion, text in issues.items()]

    deployment = (_completed(scan, "certificate_info").get("certificate_deployments") or [None])[0]
    if deployment is None:
        raise ScanError(f"sslyze's report has no certificate for {target.address}: {str(scan)[:300]}")
    leaf = deployment["received_certificate_chain"][0]
    supplied = [p for p in deployment.get("path_validation_results", []) if p["trust_store"]["name"] == SUPPLIED_STORE]
    chain_valid = bool(supplied) and bool(supplied[0]["was_validation_successful"])
    chain_error = None if chain_valid else (supplied[0]["validation_error"] if supplied else "no supplied roots")
    subject = leaf["subject"]["rfc4514_string"]
    if not chain_valid:
        rows.append(_row("certificate_chain", "", subject, f"not valid to the supplied roots: {chain_error}"))
    sans = tuple((leaf.get("subject_alternative_name") or {}).get("dns_names", []))
    hostname_matches = any(_name_matches(pattern, target.server_name) for pattern in sans)
    if not hostname_matches:
        rows.append(_row("hostname", "", target.server_name, f"not among the certificate's names {list(sans)}"))
    not_after = datetime.fromisoformat(leaf["not_valid_after"].replace("Z", "+00:00"))
    days = round((not_after - (now or datetime.now(UTC))).total_seconds() / 86400, 1)
    if days < 0:
        rows.append(_row("expiry", "", subject, f"expired {-days:g} days ago ({not_after.isoformat()})"))

    # Informational only: an endpoint that answers no HTTP leaves this scan incomplete, which is not a TLS problem.
    headers = (scan.get("http_headers") or {}).get("result") or {}
    hsts = (headers.get("strict_transport_security_header") or {}).get("max_age")
    return TlsScan(
        target=target,
        sslyze_version=str(report.get("sslyze_version", "?")),
        accepted_protocols=tuple(accepted),
        weak_ciphers=tuple(weak),
        compliant=verdict,
        compliance_issues=issues,
        chain_valid=chain_valid,
        chain_error=chain_error,
        hostname_matches=hostname_matches,
        subject=subject,
        issuer=leaf["issuer"]["rfc4514_string"],
        sans=sans,
        not_after=not_after,
        days_to_expiry=days,
        hsts_max_age=int(hsts) if hsts is not None else None,
        findings=pd.DataFrame(rows, columns=FINDING_COLUMNS),
    )


def _completed(scan: Mapping[str, Any], key: str) -> dict[str, Any]:
    attempt = scan.get(key) or {}
    if attempt.get("status") != "COMPLETED":
        raise ScanError(
            f"sslyze's {key} scan did not complete: {attempt.get('error_reason') or attempt.get('status', 'missing')}"
        )
    return attempt.get("result") or {}


def _row(check: str, protocol: str, item: str, detail: str) -> dict[str, str]:
    return {"check": check, "protocol": protocol, "item": item, "detail": detail}


def _weak_tls12(suite: str) -> bool:
    forward_secret = suite.startswith(("TLS_ECDHE_", "TLS_DHE_"))
    return not forward_secret or any(marker in suite.upper() for marker in _WEAK_MARKERS)


def _name_matches(pattern: str, name: str) -> bool:
    """RFC 6125: exact (case-insensitive), or `*.` standing for exactly one left-most label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        first, _, rest = name.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == name


def _compliance(console: str, target: TlsTarget) -> tuple[bool, dict[str, str]]:
    """Mozilla's verdict from sslyze's console: (compliant, {criterion: complaint}), verbatim."""
    lines = console.splitlines()
    for index, line in enumerate(lines):
        if line.rstrip().endswith(_COMPLIANT):
            return True, {}
        if line.rstrip().endswith(_NOT_COMPLIANT):
            issues = {}
            for complaint in lines[index + 1 :]:
                text = complaint.strip()
                if not text.startswith("* "):
                    break
                criterion, _, description = text[2:].partition(": ")
                issues[criterion] = description
            return False, issues
        if _INCOMPLETE in line:
            raise ScanError(f"sslyze's scan of {target.address} did not complete: {line.strip()}")
    raise ScanError(f"sslyze printed no Mozilla verdict for {target.address}: {console[-_OUTPUT_SHOWN:].strip()}")


def run_sslyze(venv: Path, target: TlsTarget, roots: Path, timeout: float = 120) -> TlsScan:
    """Scan `target` with the sslyze of virtualenv `venv`, checking its chain against the PEM bundle `roots`."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise ScanError(
            f"sslyze is not installed: no virtualenv at {venv}; run `make install` (it makes .venv-sslyze), or point "
            "the scanner resource's sslyze_venv at one (the run image's is /opt/sslyze)"
        )
    if not roots.is_file():
        raise ScanError(f"the trust bundle {roots} does not exist: start the local environment (`shop-ops local up`)")
    with tempfile.TemporaryDirectory(prefix="sslyze-") as folder:
        out = Path(folder) / "report.json"
        command = [
            str(python), "-W", "ignore", "-m", "sslyze", f"--json_out={out}", "--mozilla_config=intermediate",
            f"--certinfo_ca_file={roots}", "--http_headers", "--sni", target.server_name, target.address,
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ScanError(f"sslyze did not finish within {timeout:g}s against {target.address}") from None
        # 0: compliant; 1: not compliant (both wrote a report). Anything else is sslyze's own failure.
        if done.returncode not in (0, 1) or not out.exists():
            raise ScanError(
                f"sslyze exited {done.returncode} against {target.address}: "
                f"{(done.stderr or done.stdout)[-_OUTPUT_SHOWN:].strip()}"
            )
        try:
            report = json.loads(out.read_text())
        except json.JSONDecodeError as exc:
            raise ScanError(f"sslyze's report is not JSON ({exc}): {out.read_text()[:300]!r}") from None
    return parse_scan(report, done.stdout, target)
