"""The load profiles (load, stress, spike, soak) of the realistic mix, loadtests/mix.js: parameters and timing.

A LoadProfile is validated on creation and turns into the environment mix.js reads (`k6_env`).
mix.js computes its stages from that environment; `stages` repeats the same integer-millisecond
arithmetic here, so the stress plateaus (`stress_plateaus`) and the spike's peak (`spike_window`)
are known to Python, which judges them from the samples' timestamps. Change both together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal, NamedTuple, TypeGuard, get_args

ProfileName = Literal["load", "stress", "spike", "soak"]
PROFILE_NAMES: tuple[str, ...] = get_args(ProfileName)
MIX_SCRIPT = Path(__file__).resolve().parents[2] / "loadtests" / "mix.js"
# Each flow (k6 scenario) of the mix: its share of the total rate, and the endpoints (`name` tags)
# its iterations call. `homepage` (GET /, the storefront's HTML) only when the profile has a storefront.
FLOW_SHARES: Mapping[str, float] = MappingProxyType({"browse": 0.7, "cart": 0.2, "checkout": 0.1})
FLOW_ENDPOINTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "browse": ("homepage", "products", "categories", "search", "product"),
        "cart": ("create_cart", "add_to_cart", "get_cart"),
        "checkout": ("create_cart", "add_to_cart", "checkout", "order"),
    }
)
# A stage's quick ramp in mix.js: a tenth of the stage, at most this long.
RAMP_MAX_MS = 1000
# k6 beyond DURATION: VU start-up, setup() (a few catalog pages), and up to 30 s (arrival-rate
# executors' default gracefulStop) for the iterations still running.
TIMEOUT_SLACK_S = 60.0
DEFAULT_EMAIL = "loadtest@shop-ops.invalid"


class Stage(NamedTuple):
    """A stretch of a run: seconds from the start of the scenarios, total rate (iterations/s) at its start and end."""

    start_s: float
    end_s: float
    from_rate: float
    to_rate: float

    @property
    def holds(self) -> bool:
        return self.from_rate == self.to_rate


@dataclass(frozen=True)
class LoadProfile:
    """One run of the mix. `rate`: total iterations/s at the base (flows get FLOW_SHARES of it).

    `stress` climbs from `rate` to `max_rate` (None: 10 x rate) in `steps` equal stages over
    `duration_s`; `spike` jumps to `rate * spike_factor` for the middle third; `load` and `soak`
    hold `rate`. Thresholds: p95 below `p95_ms`, under 1% failed requests, over 99% passed checks;
    a stress run stops once one breaks (evaluated after `abort_delay_s`). `storefront`: GET / as part
    of the homepage (False against a bare backend). `max_vus`: the VUs of all flows together.
    `min_stock`: setup() wants products with at least this stock. `email`: the orders' address.
    """

    name: ProfileName
    rate: float
    duration_s: float
    max_rate: float | None = None
    steps: int = 10
    spike_factor: float = 10.0
    p95_ms: float = 200.0
    storefront: bool = True
    abort_delay_s: float = 10.0
    max_vus: int = 600
    min_stock: int = 50
    email: str = DEFAULT_EMAIL

    def __post_init__(self) -> None:
        if self.name not in PROFILE_NAMES:
            raise ValueError(f"profile name must be one of {', '.join(PROFILE_NAMES)}, got {self.name!r}")
        _positive("rate", self.rate)
        _positive("p95_ms", self.p95_ms)
        _positive("spike_factor", self.spike_factor)
        if not _number(self.duration_s) or self.duration_s < 1:
            raise ValueError(f"duration_s must be at least 1 (seconds), got {self.duration_s!r}")
        if not _number(self.abort_delay_s) or self.abort_delay_s < 0:
            raise ValueError(f"abort_delay_s must be 0 or more (seconds), got {self.abort_delay_s!r}")
        for field_name, minimum in (("steps", 2), ("max_vus", 6), ("min_stock", 1)):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{field_name} must be a whole number of at least {minimum}, got {value!r}")
        if self.max_rate is not None:
            _positive("max_rate", self.max_rate)
        if not isinstance(self.storefront, bool):
            raise ValueError(f"storefront must be True or False, got {self.storefront!r}")
        local, _, domain = self.email.partition("@")
        if not local or "." not in domain or any(c.isspace() for c in self.email):
            raise ValueError(f"email must be an address like {DEFAULT_EMAIL}, got {self.email!r}")
        if self.name == "stress":
            if self.top_rate <= self.rate:
                raise ValueError(
                    f"a stress profile's max_rate ({self.top_rate:g}) must be above its rate ({self.rate:g})"
                )
            if self.duration_ms // self.steps < 1000:
                raise ValueError(
                    f"a stress stage must last at least 1 s: duration_s {self.duration_s:g} over {self.steps} steps"
                )
        if self.name == "spike":
            if self.spike_factor <= 1:
                raise ValueError(f"a spike profile's spike_factor must be above 1, got {self.spike_factor:g}")
            if self.duration_ms // 3 < 1000:
                raise ValueError(
                    f"a spike profile needs duration_s of at least 3 (thirds of 1 s), got {self.duration_s:g}"
                )

    @property
    def duration_ms(self) -> int:
        """DURATION as mix.js gets it: whole milliseconds."""
        return round(self.duration_s * 1000)

    @property
    def top_rate(self) -> float:
        """The stress run's last stage: `max_rate`, or 10 x rate when it is None (as mix.js's MAX_RATE default)."""
        return self.max_rate if self.max_rate is not None else 10 * self.rate

    @property
    def peak_rate(self) -> float:
        """The highest total rate the run asks for (iterations/s)."""
        if self.name == "stress":
            return self.top_rate
        if self.name == "spike":
            return self.rate * self.spike_factor
        return self.rate

    @property
    def timeout_s(self) -> float:
        """How long run_k6 may wait for k6: the duration plus TIMEOUT_SLACK_S."""
        return self.duration_ms / 1000 + TIMEOUT_SLACK_S

    def k6_env(self, base_url: str) -> dict[str, str]:
        """The environment for mix.js against `base_url` (http(s)://host[:port], no trailing slash needed)."""
        if not base_url.startswith(("http://", "https://")) or len(base_url.split("://", 1)[1].strip("/")) == 0:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        return {
            "BASE_URL": base_url.rstrip("/"),
            "PROFILE": self.name,
            "RATE": _text(self.rate),
            "DURATION": _k6_duration(self.duration_ms),
            "MAX_RATE": _text(self.top_rate),
            "STEPS": str(self.steps),
            "SPIKE_FACTOR": _text(self.spike_factor),
            "P95_MS": _text(self.p95_ms),
            "ABORT_DELAY": _k6_duration(round(self.abort_delay_s * 1000)),
            "MAX_VUS": str(self.max_vus),
            "MIN_STOCK": str(self.min_stock),
            "STOREFRONT": "1" if self.storefront else "0",
            "EMAIL": self.email,
        }


def stages(profile: LoadProfile) -> list[Stage]:
    """The run's stages as mix.js lays them out (integer milliseconds, offsets from the scenarios' start).

    stress: STEPS stages of floor(duration / steps) ms; stage k holds rate + (max_rate - rate) * k /
    (steps - 1), reached by a ramp of min(1 s, stage / 10) at its start (stage 0: no ramp). spike: a
    third (floor) at rate, a ramp of min(1 s, third / 10) up to rate * spike_factor, held to the end of
    the second third, the same ramp down, rate to the end. load and soak: one stage at rate.
    """
    total = profile.duration_ms
    segments: list[tuple[int, float]] = []  # (ms, target) from profile.rate, as k6's stages
    if profile.name == "stress":
        stage_ms = total // profile.steps
        ramp_ms = min(RAMP_MAX_MS, stage_ms // 10)
        segments.append((stage_ms, profile.rate))
        for k in range(1, profile.steps):
            target = profile.rate + (profile.top_rate - profile.rate) * k / (profile.steps - 1)
            segments += [(ramp_ms, target), (stage_ms - ramp_ms, target)]
    elif profile.name == "spike":
        third_ms = total // 3
        ramp_ms = min(RAMP_MAX_MS, third_ms // 10)
        peak = profile.peak_rate
        segments += [(third_ms, profile.rate), (ramp_ms, peak), (third_ms - ramp_ms, peak)]
        segments += [(ramp_ms, profile.rate), (total - 2 * third_ms - ramp_ms, profile.rate)]
    else:
        segments.append((total, profile.rate))
    out: list[Stage] = []
    at_ms, rate = 0, profile.rate
    for ms, target in segments:
        out.append(Stage(at_ms / 1000, (at_ms + ms) / 1000, rate, target))
        at_ms, rate = at_ms + ms, target
    return out


def stress_plateaus(profile: LoadProfile) -> list[tuple[float, float, float]]:
    """(start_s, end_s, total rate) of each stress stage's plateau, the part after its ramp; in stage order."""
    if profile.name != "stress":
        raise ValueError(f"plateaus are those of a stress profile, not of {profile.name!r}")
    return [(s.start_s, s.end_s, s.to_rate) for s in stages(profile) if s.holds]


def spike_window(profile: LoadProfile) -> tuple[float, float]:
    """(start_s, end_s) of the spike's peak plateau, after its ramp up and before its ramp down."""
    if profile.name != "spike":
        raise ValueError(f"a spike window is that of a spike profile, not of {profile.name!r}")
    peak = next(s for s in stages(profile) if s.holds and s.to_rate == profile.peak_rate)
    return peak.start_s, peak.end_s


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(name: str, value: object) -> None:
    if not _number(value) or value <= 0:
        raise ValueError(f"{name} must be a number above 0, got {value!r}")


def _text(value: float) -> str:
    """A number as mix.js's Number() reads it: '20' rather than '20.0'."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _k6_duration(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
