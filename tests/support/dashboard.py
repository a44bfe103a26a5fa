"""Reading a Grafana dashboard's Prometheus queries, and a service's metric names.

Shared by the deployment tests that compare the dashboard with what the service exports and
run its queries against a real Prometheus.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every query target of every panel, rows' nested panels included."""
    panels = list(dashboard["panels"])
    for panel in dashboard["panels"]:
        panels += panel.get("panels", [])
    return [t for p in panels for t in p.get("targets", [])]


_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_PROMQL_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords,
    label names (inside ``{}`` or a grouping clause), strings or durations (``5m``)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.:$])\$?[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group(0)
        if word.startswith("$") or word in _PROMQL_KEYWORDS:
            continue
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function or aggregation
        names.add(word)
    return names


def dashboard_metrics(dashboard: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for target in targets(dashboard):
        names |= promql_metrics(target["expr"])
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        selected = re.fullmatch(r"label_values\((.+),\s*\w+\)", text.strip())
        names |= promql_metrics(selected[1] if selected else text)
    return names


def grafana_to_promql(expr: str) -> str:
    """A panel query with Grafana's variables filled in as Prometheus would receive it."""
    expr = re.sub(r"\$__(?:rate_interval|interval|range)\b", "1m", expr)
    return re.sub(r"\$\w+", ".*", expr)


def exported_metric_names(text: str) -> set[str]:
    """Every series name the exposition can contain, from its families' types."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created", ""),
        "gauge": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names
