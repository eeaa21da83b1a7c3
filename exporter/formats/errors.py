"""Errors shared by several parsers of trust data (EFI variables, certificates, kernel knobs)."""

from __future__ import annotations


class TrustDataError(Exception):
    """Malformed trust data.  ``code``: unreadable, bad_efivar, bad_signature_list,
    bad_certificate, bad_lockdown, bad_sig_enforce, too_large."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
