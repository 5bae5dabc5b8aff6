"""The one release flow (shop_ops/release/flow.py) over a recording strategy and a real SQLite ledger, without Dagster.

The strategies' own steps are tested against the real pieces (test_bluegreen.py: containers and
nginx; test_ecs_release.py: moto); here what the flow does around any strategy: the order of the
steps, what each failure leaves in the ledger, and that a refusal changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shop_ops.release.flow import (
    DeployFailed,
    DeployRefused,
    Placement,
    Release,
    StepFailed,
    deploy,
    rollback,
)
from shop_ops.resources.ledger import LedgerEntry, ReleaseLedger

V1 = Release("1.0.0", "sha256:" + "1" * 64, "sha256:" + "a" * 64)
V2 = Release("2.0.0", "sha256:" + "2" * 64, "sha256:" + "b" * 64)


@dataclass
class Verdict:
    passed: bool
    reason: str = ""

    def numbers(self) -> dict[str, float]:
        return {"k6_p95_ms": 12.5}


@dataclass
class Recorder:
    """A strategy that records its steps; `fail` names a step that raises (a StepFailed or another error)."""

    ledger: ReleaseLedger
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    locked: bool = False

    def log(self, line: str) -> None:
        pass

    def _step(self, name: str) -> None:
        assert self.locked, f"{name} ran outside the environment's lock"
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]

    @contextmanager
    def lock(self, environment: str) -> Iterator[None]:
        if "lock" in self.fail:
            raise self.fail["lock"]
        self.locked = True
        try:
            yield
        finally:
            self.locked = False

    def place(self, environment: str) -> Placement:
        self._step("place")
        return Placement(label="slot", ledger_slot="green", target="green", previous="blue")

    def images(self, backend_digest: str, frontend_digest: str) -> dict[str, str]:
        return {"backend": f"reg/shop/backend@{backend_digest}", "frontend": f"reg/shop/frontend@{frontend_digest}"}

    def migrate(self, environment: str, release: Release, images: dict[str, str], place: Placement) -> dict[str, Any]:
        self._step("migrate")
        return {"revision_after": "0002"}

    def roll_out(self, environment: str, images: dict[str, str], place: Placement, steps: dict[str, float]) -> str:
        self._step("roll_out")
        return "http://127.0.0.1:1"

    def revert(self, place: Placement, steps: dict[str, float]) -> str:
        self._step("revert")
        return "; back on blue"

    def check_rollback(self, environment: str, target: LedgerEntry, images: dict[str, str], place: Placement) -> None:
        self._step("check_rollback")

    def restore(self, environment: str, images: dict[str, str], place: Placement, steps: dict[str, float]) -> float:
        self._step("restore")
        return 0.25

    def retire(self, place: Placement, steps: dict[str, float]) -> None:
        self._step("retire")


@pytest.fixture
def ledger(tmp_path: Path) -> ReleaseLedger:
    return ReleaseLedger(tmp_path)


def passes(url: str) -> Verdict:
    return Verdict(True)


def fails(url: str) -> Verdict:
    return Verdict(False, "/version answered 0.9.9")


def test_a_verified_deploy_runs_every_step_in_order_and_replaces_the_previous_release(ledger):
    first = deploy("staging", V1, Recorder(ledger), verify=passes)
    strategy = Recorder(ledger)
    second = deploy("staging", V2, strategy, verify=passes, approved_by=None)
    assert strategy.calls == ["place", "migrate", "roll_out", "retire"]
    assert (second.status, second.kind, second.previous_release_id) == ("verified", "deploy", first.release_id)
    assert ledger.get(first.release_id).status == "replaced"
    assert ledger.serving("staging").release_id == second.release_id
    metadata = second.metadata()
    assert (metadata["slot"], metadata["previous_slot"], metadata["previous_version"]) == ("green", "blue", "1.0.0")
    assert metadata["schema_revision_after"] == "0002" and metadata["k6_p95_ms"] == 12.5
    assert {"migrate_seconds", "verify_seconds", "total_seconds"} <= set(metadata)


def test_a_failed_verification_reverts_and_ends_rolled_back(ledger):
    deploy("staging", V1, Recorder(ledger), verify=passes)
    strategy = Recorder(ledger)
    with pytest.raises(
        DeployFailed,
        match=re.escape(
            "staging deploy of 2.0.0 rolled back: verification failed: /version answered 0.9.9; back on blue"
        ),
    ) as failed:
        deploy("staging", V2, strategy, verify=fails)
    assert strategy.calls == ["place", "migrate", "roll_out", "revert"]  # nothing retired
    result = failed.value.result
    assert result.status == "rolled_back" and result.rollback_seconds is not None
    assert ledger.get(result.release_id).status == "rolled_back"
    assert ledger.serving("staging").version == "1.0.0"


def test_a_crashing_verifier_is_a_failed_verification(ledger):
    def crashes(url: str) -> Verdict:
        raise RuntimeError("k6 vanished")

    with pytest.raises(DeployFailed, match="the verifier raised RuntimeError: k6 vanished"):
        deploy("staging", V1, Recorder(ledger), verify=crashes)


@pytest.mark.parametrize(
    ("step", "error", "status", "reason"),
    [
        ("migrate", RuntimeError("shop-migrate exited 1"), "failed", "migration failed: shop-migrate exited 1"),
        ("migrate", StepFailed("ECS deploy could not start: no such service"), "failed", "ECS deploy could not start"),
        ("roll_out", StepFailed("the green slot did not become ready"), "failed", "did not become ready"),
        ("roll_out", StepFailed("the ECS rollout did not become steady", "rolled_back"), "rolled_back", "steady"),
        ("roll_out", OSError("socket closed"), "failed", "roll-out failed: OSError: socket closed"),
    ],
)
def test_a_failing_step_ends_the_attempt_with_its_reason(ledger, step, error, status, reason):
    strategy = Recorder(ledger, fail={step: error})
    with pytest.raises(DeployFailed, match=reason) as failed:
        deploy("staging", V1, strategy, verify=passes)
    assert strategy.calls[-1] == step and "retire" not in strategy.calls
    [row] = ledger.history("staging")
    assert (row["status"], row["finished_at"] is not None) == (status, True)
    assert reason in row["reason"] and failed.value.result.status == status


def test_guards_and_the_lock_refuse_before_anything_changes(ledger):
    strategy = Recorder(ledger)
    with pytest.raises(DeployRefused, match="approved_by is required"):
        deploy("production", V1, strategy, verify=passes)
    with pytest.raises(DeployRefused, match="has not been verified on staging"):
        deploy("production", V1, strategy, verify=passes, approved_by="ada")
    with pytest.raises(DeployRefused, match="is not a sha256 manifest digest"):
        deploy("staging", Release("1.0.0", "latest", V1.frontend_digest), strategy, verify=passes)
    held = Recorder(ledger, fail={"lock": DeployRefused("another deploy of staging is running")})
    with pytest.raises(DeployRefused, match="another deploy"):
        deploy("staging", V1, held, verify=passes)
    assert strategy.calls == held.calls == [] and ledger.history() == []
    deploy("staging", V1, Recorder(ledger), verify=passes)
    assert deploy("production", V1, Recorder(ledger), verify=passes, approved_by="ada").status == "verified"


def test_rollback_puts_the_previous_release_back_and_marks_the_current_one(ledger):
    strategy = Recorder(ledger)
    with pytest.raises(DeployRefused, match="no previous verified release"):
        rollback("staging", strategy)
    first = deploy("staging", V1, Recorder(ledger), verify=passes)
    second = deploy("staging", V2, Recorder(ledger), verify=passes)
    refusing = Recorder(ledger, fail={"check_rollback": DeployRefused("contracting migration 0004 ran since")})
    with pytest.raises(DeployRefused, match="contracting migration"):
        rollback("staging", refusing)
    assert len(ledger.history()) == 2  # refused: no row

    result = rollback("staging", strategy, reason="checkout errors")
    assert strategy.calls == ["place", "place", "check_rollback", "restore", "retire"]
    assert (result.kind, result.version, result.status, result.rollback_seconds) == (
        "rollback",
        "1.0.0",
        "verified",
        0.25,
    )
    assert ledger.get(second.release_id).status == "rolled_back"
    assert ledger.serving("staging").release_id == result.release_id
    assert f"back on 1.0.0 ({first.release_id})" in result.reason


def test_a_rollback_that_does_not_serve_ends_failed(ledger):
    deploy("staging", V1, Recorder(ledger), verify=passes)
    second = deploy("staging", V2, Recorder(ledger), verify=passes)
    with pytest.raises(
        DeployFailed, match=re.escape("staging rollback to 1.0.0 failed: the blue slot did not become ready")
    ):
        rollback("staging", Recorder(ledger, fail={"restore": StepFailed("the blue slot did not become ready")}))
    assert ledger.serving("staging").release_id == second.release_id  # still the one that served
    assert ledger.history("staging")[-1]["status"] == "failed"
