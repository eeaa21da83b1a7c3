"""Facts of the os collector: which distribution this is, and so which family's backend reads
its packages and speaks its fix commands."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OsFacts:
    family: str              # debian | rhel | suse | arch | unknown
    id: str                  # os-release ID ("debian", "rocky", "opensuse-tumbleweed"), or ""
    version_id: str          # os-release VERSION_ID, or ""
    pretty_name: str
    evidence: str            # what decided the family: "os-release", or the package database seen
