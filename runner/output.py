"""Rendering rows for people (the original design's log lines) and for log pipelines."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

ARROW = "\u2192"


def human_duration(value: timedelta | None) -> str:
    """12min, 3h 5min, 2d 4h: what a person reads at a glance in a start-up log."""
    if value is None:
        return "?"
    seconds = int(value.total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}min" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def active_line(row: Mapping[str, Any]) -> str:
    line = (
        f"  - {row['run_id']}: {row['status']}, {row['completed']}/{row['total']}, "
        f"age: {human_duration(row['age'])}, idle: {human_duration(row['idle'])}"
    )
    if row.get("stuck"):
        line += " (stuck)"
    return line


def recovered_line(row: Mapping[str, Any]) -> str:
    target = "PENDING" if row.get("action") == "requeued" else "FAILED"
    return (
        f"  - Run {row['run_id']}: {row['completed']}/{row['total']} completed "
        f"(status: {row['previous_status']} {ARROW} {target}), "
        f"idle: {human_duration(row['idle'])}"
    )


def json_line(row: Mapping[str, Any]) -> str:
    """One JSON object per run; intervals become seconds (age_seconds, idle_seconds)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, timedelta):
            out[f"{key}_seconds"] = value.total_seconds()
        else:
            out[key] = value
    return json.dumps(out, default=str)
