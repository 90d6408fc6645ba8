"""What the load run measured: per-endpoint latencies from the *intended* start of each request
(so a slow server cannot hide its queueing: no coordinated omission), outcomes by status and
error code, and the formatting of the report."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

TRANSPORT_ERROR = 0  # status recorded when no HTTP answer came back (timeout, reset)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50, p99 and max of latencies in seconds, reported in milliseconds."""

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {
        "count": len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values) if values else None),
    }


@dataclass
class Recorder:
    """Collects every request's outcome; one per run, used from one event loop."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    flows: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    #: how late the generator itself launched a request after its scheduled time
    launch_lag: list[float] = field(default_factory=list)

    async def call(
        self,
        client: httpx.AsyncClient,
        endpoint: str,
        method: str,
        url: str,
        *,
        intended: float,
        expect: Iterable[int] = (200, 201),
        **kwargs: Any,
    ) -> httpx.Response | None:
        """Send one request; latency counts from ``intended`` (the loop time it was due), so a
        request that had to wait for its turn, or for the previous step of its flow, shows it."""
        loop = asyncio.get_running_loop()
        self.launch_lag.append(max(0.0, loop.time() - intended))
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.latencies[endpoint].append(loop.time() - intended)
            self.outcomes[(endpoint, TRANSPORT_ERROR, type(exc).__name__)] += 1
            return None
        self.latencies[endpoint].append(loop.time() - intended)
        code = "" if response.status_code in set(expect) else error_code(response)
        self.outcomes[(endpoint, response.status_code, code)] += 1
        return response if response.status_code in set(expect) else None

    def failure(self, endpoint: str, reason: str) -> None:
        """A flow step that failed without an HTTP answer of its own (e.g. never verified)."""
        self.outcomes[(endpoint, TRANSPORT_ERROR, reason)] += 1

    def flow(self, name: str, seconds: float) -> None:
        self.flows[name].append(seconds)

    def endpoint_rows(self, window: float, order: Sequence[str] = ()) -> list[dict[str, Any]]:
        """One row per endpoint, in ``order`` (the flow's order) first, then by name."""
        rank = {e: i for i, e in enumerate(order)}
        rows = []
        for endpoint in sorted(self.latencies, key=lambda e: (rank.get(e, len(rank)), e)):
            counts = [(s, n) for (e, s, _), n in self.outcomes.items() if e == endpoint]
            ok = sum(n for s, n in counts if 200 <= s < 300)
            total = sum(n for _, n in counts)
            rows.append(
                {
                    "endpoint": endpoint,
                    **summary(self.latencies[endpoint]),
                    "ok": ok,
                    "errors": total - ok,
                    "per_second": round(total / window, 2) if window > 0 else None,
                }
            )
        return rows

    def error_rows(self) -> list[dict[str, Any]]:
        return [
            {"endpoint": e, "status": s, "code": c, "count": n}
            for (e, s, c), n in sorted(self.outcomes.items())
            if not 200 <= s < 300
        ]

    def total_requests(self) -> int:
        return sum(n for (e, _, _), n in self.outcomes.items() if e in self.latencies)


def error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "non_json"
    return str(body.get("code", "no_code")) if isinstance(body, dict) else "no_code"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain text table; ``columns`` are (key, heading)."""

    def cell(v: Any) -> str:
        return "-" if v is None else str(v)

    widths = [max(len(h), *(len(cell(r.get(k))) for r in rows)) if rows else len(h) for k, h in columns]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(
                cell(r.get(k)).ljust(w) if i == 0 else cell(r.get(k)).rjust(w)
                for i, ((k, _), w) in enumerate(zip(columns, widths, strict=True))
            )
        )
    return "\n".join(lines)
