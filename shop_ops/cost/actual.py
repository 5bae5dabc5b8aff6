"""What AWS billed (`spend`): daily cost from Cost Explorer by Environment and Component tag, or why there is none.

`SpendSource` is the resource; callers never ask which one they have. `CostExplorerSpend` calls
`get_cost_and_usage` (daily, UnblendedCost, filtered on the Project tag, grouped by the
Environment and Component tags); `NoSpend` (the local profile) answers an empty frame and the
reason. A frame that could not be measured carries `reason`; a measured one has `reason=None`,
even when it is empty (nothing billed yet).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from shop_ops.resources.aws import AwsResource

SPEND_COLUMNS = ["date", "environment", "component", "usd", "estimated"]
GROUP_TAGS = ("Environment", "Component")
# Cost Explorer's own label for cost without the tag; kept apart, never spread over the tagged rows.
UNTAGGED = "untagged"
METRIC = "UnblendedCost"


class SpendError(RuntimeError):
    """Cost Explorer refused or failed; the message says why and what to do."""


@dataclass(frozen=True)
class Spend:
    """Daily spend rows (SPEND_COLUMNS) and, when it could not be measured, why."""

    frame: pd.DataFrame
    reason: str | None = None

    @property
    def measured(self) -> bool:
        return self.reason is None


def empty_spend() -> pd.DataFrame:
    frame = pd.DataFrame({column: [] for column in SPEND_COLUMNS})
    return frame.astype(
        {"date": "datetime64[ns]", "environment": str, "component": str, "usd": float, "estimated": bool}
    )


def spend_frame(pages: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """get_cost_and_usage answers (grouped by GROUP_TAGS) as rows; a tag's empty value becomes UNTAGGED."""
    rows = []
    for page in pages:
        for period in page.get("ResultsByTime", []):
            day = pd.Timestamp(period["TimePeriod"]["Start"])
            for group in period.get("Groups", []):
                values = dict(zip(GROUP_TAGS, (_tag_value(key) for key in group["Keys"]), strict=True))
                rows.append(
                    {
                        "date": day,
                        "environment": values["Environment"],
                        "component": values["Component"],
                        "usd": float(group["Metrics"][METRIC]["Amount"]),
                        "estimated": bool(period.get("Estimated", False)),
                    }
                )
    if not rows:
        return empty_spend()
    return pd.DataFrame(rows, columns=SPEND_COLUMNS).sort_values(
        ["date", "environment", "component"], ignore_index=True
    )


def _tag_value(key: str) -> str:
    """`Environment$staging` -> `staging`; `Environment$` (no such tag) -> UNTAGGED."""
    _, _, value = key.partition("$")
    return value or UNTAGGED


def cost_and_usage_request(start: date, end: date, project: str) -> dict[str, Any]:
    """The get_cost_and_usage arguments for [start, end) (end exclusive, as Cost Explorer takes it)."""
    return {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": "DAILY",
        "Metrics": [METRIC],
        "GroupBy": [{"Type": "TAG", "Key": key} for key in GROUP_TAGS],
        "Filter": {"Tags": {"Key": "Project", "Values": [project], "MatchOptions": ["EQUALS"]}},
    }


class SpendSource(dg.ConfigurableResource):
    """Daily spend of the shop's AWS resources (`spend`)."""

    @abstractmethod
    def daily_spend(self, start: date, end: date) -> Spend:
        """Spend per day, environment and component for [start, end)."""


class NoSpend(SpendSource):
    """No bill to read (the local profile runs nothing on AWS): an empty frame and the reason."""

    reason: str

    def daily_spend(self, start: date, end: date) -> Spend:
        return Spend(empty_spend(), self.reason)


class CostExplorerSpend(SpendSource):
    """AWS Cost Explorer (its API lives in us-east-1 whatever the shop's region); $0.01 per request page."""

    aws: AwsResource
    project: str = "shop"

    def daily_spend(self, start: date, end: date) -> Spend:
        if end <= start:
            return Spend(empty_spend())  # nothing has been billed in an empty period
        request = cost_and_usage_request(start, end, self.project)
        try:
            return Spend(spend_frame(self._pages(request)))
        except NoCredentialsError:
            return Spend(
                empty_spend(),
                "no AWS credentials: boto3 found none (set AWS_PROFILE, or run with a role that may call "
                "ce:GetCostAndUsage)",
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            if code == "DataUnavailableException":
                return Spend(empty_spend(), f"Cost Explorer has no data for this period yet ({message})")
            if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
                raise SpendError(
                    f"Cost Explorer refused get_cost_and_usage ({code}): grant ce:GetCostAndUsage to the run's role "
                    "(infra/terraform modules/iam: the Dagster run task role) and enable Cost Explorer for the account"
                ) from None
            raise SpendError(f"Cost Explorer failed ({code}: {message})") from None
        except BotoCoreError as exc:
            raise SpendError(f"Cost Explorer could not be reached ({type(exc).__name__}: {exc})") from None

    def _pages(self, request: dict[str, Any]) -> Iterable[dict[str, Any]]:
        client = self.aws.client("ce")
        token = None
        while True:
            page = client.get_cost_and_usage(**request, **({"NextPageToken": token} if token else {}))
            yield page
            token = page.get("NextPageToken")
            if not token:
                return
