"""The report: machine facts and Markdown tables of medians and ratios."""

from __future__ import annotations

import os
import platform
import re
import socket
import statistics
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path

from servers import HOODY, LABELS, OPENSSH, RCLONE_SFTP, RCLONE_WEBDAV, WSGIDAV
from workloads import Cell, Metric, Results

PEAK_TARGET_MB = 150.0


def _command_version(command: list[str], pattern: str = r".+") -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "not found"
    text = (done.stdout + done.stderr).strip()
    match = re.search(pattern, text)
    return match.group(0).strip() if match else (text.splitlines() or ["?"])[0]


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _meminfo() -> str:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _filesystem(path: Path) -> str:
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as handle:
            for line in handle:
                parts = line.split()
                point = parts[1]
                if str(path).startswith(point) and len(point) >= len(best):
                    best, kind = point, f"{parts[2]} ({parts[0]} on {point})"
    except OSError:
        pass
    return kind


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "?"


def machine_facts(temp: Path) -> dict[str, str]:
    """What the numbers were measured on."""
    load = os.getloadavg()
    return {
        "host": socket.gethostname(),
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{os.cpu_count()} x {_cpu_model()} (nproc {len(os.sched_getaffinity(0))})",
        "memory": _meminfo(),
        "kernel": f"{platform.system()} {platform.release()}",
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "temp folder": f"{temp} on {_filesystem(temp)}",
        "python": sys.version.split()[0],
        "hoody-mount": f"{_package('hoody-mount')} at {_git_commit()}",
        "asyncssh": _package("asyncssh"),
        "wsgidav": _package("wsgidav"),
        "cheroot": _package("cheroot"),
        "rclone": _command_version(["rclone", "version"], r"rclone v\S+"),
        "openssh": _command_version(["ssh", "-V"], r"OpenSSH_\S+"),
        "sshfs": _command_version(["sshfs", "--version"], r"SSHFS version \S+"),
        "curl": _command_version(["curl", "--version"], r"curl \S+"),
    }


def median(cell: Cell | None) -> float | None:
    """The median of the cell's samples, or None without samples."""
    return statistics.median(cell.samples) if cell and cell.samples else None


def _time(cell: Cell | None, show_errors: bool = False, unit: str = "s") -> str:
    value = median(cell)
    text = "—" if value is None else f"{value:.2f} {unit}"
    if cell and (cell.errors or show_errors):
        text += f", {cell.errors} err"
    return text


def _ratio(ours: float | None, anchor: float | None) -> float | None:
    if ours is None or anchor is None or anchor <= 0:
        return None
    return ours / anchor


def time_table(metrics: list[Metric], results: Results, order: list[str]) -> list[str]:
    """One row per metric and anchor: medians, ratio hoody-mount / anchor, target."""
    lines = [
        "| Workload | hoody-mount | Anchor | Anchor median | Ratio | Target |",
        "|---|---:|---|---:|---:|---|",
    ]
    for metric in metrics:
        cells = results.get(metric.id, {})
        ours = cells.get(HOODY)
        anchors = [key for key in order if key != HOODY and key in cells]
        for position, anchor in enumerate(anchors or [""]):
            theirs = cells.get(anchor)
            ratio = _ratio(median(ours), median(theirs))
            target = ""
            if metric.target and metric.target.anchor == anchor:
                met = ratio is not None and ratio <= metric.target.ratio
                met = met and not (ours and ours.errors)
                target = f"{metric.target.text}: **{'met' if met else 'MISSED'}**"
            if metric.zero_errors and position == 0:
                clean = ours is not None and bool(ours.samples) and ours.errors == 0
                target = f"0 errors: **{'met' if clean else 'MISSED'}**"
            lines.append(
                "| {} | {} | {} | {} | {} | {} |".format(
                    metric.label if position == 0 else "",
                    _time(ours, metric.zero_errors, metric.unit) if position == 0 else "",
                    LABELS.get(anchor, "—"),
                    _time(theirs, metric.zero_errors, metric.unit),
                    "—" if ratio is None else f"{ratio:.2f}x",
                    target,
                )
            )
    return lines


PEAK_LABELS = {
    "peak-run": "Peak RSS, whole run",
    "peak-many-sftp": "Peak RSS during the many-SFTP-sessions workload",
    "peak-many-dav": "Peak RSS during the many-WebDAV-clients workload",
    "peak-many-dav-shared": "Peak RSS during the many-WebDAV-clients workload, one folder",
    "peak-many": "Peak RSS, many-clients run",
    "peak-big-folder-dav": "Peak RSS during the big-folder PROPFINDs",
    "peak-big-folder-sftp": "Peak RSS during the big-folder sftp ls -1",
    "peak-big-folder-api": "Peak RSS during the big-folder file API listing",
}
IDLE_ROWS = [
    ("idle-none", "RSS, no connections"),
    ("idle-ssh", "RSS, 200 idle SSH connections (SFTP open)"),
    ("idle-http", "RSS, 200 idle HTTP keep-alive connections"),
    ("idle-both", "RSS, 200 idle SSH + 200 idle HTTP"),
]
MEMORY_COLUMNS = [HOODY, OPENSSH, RCLONE_SFTP, WSGIDAV, RCLONE_WEBDAV]


def memory_rows(results: Results) -> list[tuple[str, str]]:
    """The memory rows present: the whole run's peak, each workload's, then idle RSS."""
    per_workload = [
        (metric, PEAK_LABELS.get(metric, f"Peak RSS during the {metric[5:]} workload"))
        for metric in results
        if metric.startswith("peak-") and metric not in ("peak-run", "peak-many")
    ]
    rows = [("peak-run", PEAK_LABELS["peak-run"]), *per_workload]
    return [*rows, ("peak-many", PEAK_LABELS["peak-many"]), *IDLE_ROWS]


def memory_table(results: Results, idle_connections: int) -> list[str]:
    """Memory in MB (10^6 bytes): hoody-mount and the anchors that were measured."""
    rows = memory_rows(results)
    columns = [k for k in MEMORY_COLUMNS if any(k in results.get(m, {}) for m, _ in rows)]
    if not columns:
        return []
    lines = [
        "| Memory (MB) | " + " | ".join(LABELS[k] for k in columns) + " | Target |",
        "|---|" + "---:|" * len(columns) + "---|",
    ]
    for metric, label in rows:
        cells = results.get(metric, {})
        if not cells:
            continue
        row = []
        for key in columns:
            cell = cells.get(key)
            value = median(cell)
            text = "—" if value is None else f"{value:.1f}"
            if cell and cell.info:
                text += f" ({cell.info})"
            if cell and cell.errors:
                text += f" ({cell.notes[0][:70] if cell.notes else f'{cell.errors} err'})"
            row.append(text)
        target = ""
        if metric == "peak-many":
            value = median(cells.get(HOODY))
            met = value is not None and value < PEAK_TARGET_MB
            target = f"< {PEAK_TARGET_MB:.0f} MB: **{'met' if met else 'MISSED'}**"
        label = label.replace("200", str(idle_connections))
        lines.append(f"| {label} | " + " | ".join(row) + f" | {target} |")
    return lines


def details(metrics: list[Metric], results: Results, order: list[str]) -> list[str]:
    """Every sample and every error message, for the record."""
    lines = []
    ids = [m.id for m in metrics] + [m for m, _ in memory_rows(results)]
    for metric in ids:
        for key in order:
            cell = results.get(metric, {}).get(key)
            if cell is None:
                continue
            samples = ", ".join(f"{s:.3f}" for s in cell.samples) or "none"
            line = f"- `{metric}` {LABELS[key]}: {samples}"
            if cell.errors:
                line += f"; {cell.errors} error(s): " + " / ".join(cell.notes)
            lines.append(line)
    return lines


def render(
    facts: dict[str, str],
    settings: dict[str, str],
    metrics: list[Metric],
    results: Results,
    order: list[str],
    problems: list[str],
    idle_connections: int,
) -> str:
    """The whole report as Markdown."""
    out = [f"# hoody-mount benchmark, {facts['date']} on {facts['host']}", ""]
    out += ["## Machine", ""] + [f"- {k}: {v}" for k, v in facts.items()] + [""]
    out += ["## Settings", ""] + [f"- {k}: {v}" for k, v in settings.items()] + [""]
    if problems:
        out += ["## Problems", ""] + [f"- {p}" for p in problems] + [""]
    out += [
        "## Times",
        "",
        "Median wall time of the runs; ratio = hoody-mount / anchor (below 1.00x: hoody-mount",
        "is faster). `err`: failed runs or, for the many-clients rows, failed transfers.",
        "",
        *time_table(metrics, results, order),
        "",
    ]
    memory = memory_table(results, idle_connections)
    if memory:
        out += [
            "## Memory",
            "",
            "RSS of the server process; for OpenSSH the sum over sshd and its per-connection",
            "processes (their PSS in brackets). Peaks (single-process servers only) are the",
            "higher of VmHWM and the RSS sampled every 50 ms; both restart before each",
            "workload, so a workload's peak is its own (the whole run's is the highest).",
            "",
            *memory,
            "",
        ]
    out += ["## All samples", "", *details(metrics, results, order), ""]
    return "\n".join(out)
