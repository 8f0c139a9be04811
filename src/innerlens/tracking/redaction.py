"""Passwords out of what is logged or forwarded: params, config.json and messages are readable by
everyone with access to the tracking server, and Ray shows a task's runtime_env in its state API."""
from __future__ import annotations

import re

# scheme://user:password@host (the password group stops at '@', whitespace or a quote)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s\"]+):[^@\s\"]+@", re.IGNORECASE)


def redact_secrets(text: str) -> str:
    """Mask the password of every ``scheme://user:password@host`` URL in ``text``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def without_password(value: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user@host``: a URL a worker completes from its own environment."""
    return _URL_PASSWORD.sub(r"\1@", value)
