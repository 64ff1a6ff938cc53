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


def shown(value: Any) -> str:
    """A value from a table as one line: control characters (a newline, an ANSI escape in
    a run id written by the table's owner) are escaped, so no value can forge a line."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _run_name(row: Mapping[str, Any], id_key: str = "run_id") -> str:
    """The run id, prefixed with its table unless it lives in the built-in table."""
    table = row.get("table_name")
    if table and table != "qualification_runs":
        return f"{shown(table)} {shown(row[id_key])}"
    return shown(row[id_key])


def _progress(row: Mapping[str, Any]) -> str:
    def count(key: str) -> str:
        value = row.get(key)
        return "-" if value is None else str(value)

    return f"{count('completed')}/{count('total')}"


def active_line(row: Mapping[str, Any]) -> str:
    line = (
        f"  - {_run_name(row)}: {shown(row['status'])}, {_progress(row)}, "
        f"age: {human_duration(row['age'])}, idle: {human_duration(row['idle'])}"
    )
    if row.get("stuck"):
        line += " (stuck)"
    return line


def recovered_line(row: Mapping[str, Any]) -> str:
    """The status shown is the one the database wrote (an adopted table's own), never assumed."""
    status = row.get("status") or ("PENDING" if row.get("action") == "requeued" else "FAILED")
    return (
        f"  - Run {_run_name(row)}: {_progress(row)} completed "
        f"(status: {shown(row['previous_status'])} {ARROW} {shown(status)}), "
        f"idle: {human_duration(row['idle'])}"
        + (f" ({shown(row['reason'])})" if row.get("reason") is not None else "")
    )


def resumed_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """resume_run()'s row under the names recover and list print: its `id` is `run_id`.

    The SQL function keeps the table's own column name; one name for one thing
    is the runner's job, so a log pipeline reads `run_id` from every command.
    """
    return {("run_id" if key == "id" else key): value for key, value in row.items()}


def resumed_line(row: Mapping[str, Any]) -> str:
    """A row of resumed_record(): the run, its status now and the progress it kept."""
    attempts = "" if row.get("attempts") is None else f", attempts: {row['attempts']}"
    return (
        f"  - Run {_run_name(row)}: resumed {ARROW} {shown(row['status'])}, "
        f"{_progress(row)} kept{attempts}"
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


INSTANCE_HEADERS = ("INSTANCE", "LIFE", "STATE", "LAST HEARTBEAT", "ACTIVE RUNS", "END REASON")


def instance_cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    """One life of stuck_runs_instances as a table row: its heartbeat as an age, by the
    database's clock (silent_for), never the two clocks mixed."""
    return (
        shown(row["instance"]),
        shown(row["life"]),
        shown(row["state"]),
        f"{human_duration(row['silent_for'])} ago",
        str(row["active_runs"]),
        "" if row.get("end_reason") is None else shown(row["end_reason"]),
    )


def table_lines(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart, no trailing blanks."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
