"""One redaction rule for every URL agentledger prints, logs, stores or hands to Temporal.

A ledger URL may carry credentials: `s3://bucket/prefix?endpoint_url=http://user:secret@host`, or a
signed or tokenised query (`?token=…`, `X-Amz-Signature=…`). Whatever agentledger writes where
someone else reads it (log lines, error messages, CLI output, ledger rows, activity failures in
Temporal's history) goes through `redact`, which replaces, in every URL found in the text:

- the user information (`user:password@`, or a lone `user@`) by `***@`;
- the value of every query (or fragment) parameter whose name looks secret (`password`, `secret`, `token`,
  `signature`, `credential`, `auth`, `session`, an API, access or private key, `key`, `sig`, and the
  `X-Amz-` family) by `***` (a key *id* such as `sse_kms_key_id` names a key and is kept);
- and, recursively, the same in query values that are URLs themselves (`endpoint_url=…`).

Pure: no I/O, importable by every layer (`errors` builds its messages with it).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ['REDACTED', 'redact', 'redact_url']

REDACTED = '***'
"""What stands where a secret was."""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_SECRET_NAME = re.compile(
    r'pass|secret|token|signature|credential|auth|session|api[-_]?key|access[-_]?key|private[-_]?key|^key$|^sig$|^x-amz-',
    re.IGNORECASE,
)
_TRAILING = '.,;:)]}'
_USER_INFO = re.compile(r'^([A-Za-z][A-Za-z0-9+.-]*://)(?!\*\*\*@)[^\s?#]*@')
"""A URL's scheme and everything up to the last `@` before its query or fragment: the user information."""


def redact_url(url: str) -> str:
    """`url` with its user information and secret-looking query and fragment values replaced by `***`."""
    # User information first, as text: a password holding `/` would end `urlsplit`'s authority early.
    url = _USER_INFO.sub(rf'\1{REDACTED}@', url, count=1)
    try:
        parts = urlsplit(url)
    except ValueError:
        # Not parseable as a URL (a bad IPv6 literal, say): keep only the scheme.
        return f'{url.split("://", 1)[0]}://{REDACTED}'
    query, fragment = _redacted_parameters(parts.query), _redacted_parameters(parts.fragment)
    if query == parts.query and fragment == parts.fragment:
        return url
    # Spelled out rather than `urlunsplit`, which drops an empty authority (`sqlite:////abs/path`).
    rebuilt = f'{parts.scheme}://{parts.netloc}{parts.path}'
    rebuilt += f'?{query}' if query else ''
    return rebuilt + (f'#{fragment}' if fragment else '')


def _redacted_parameters(text: str) -> str:
    """A query (or a fragment of `name=value` pairs, as OAuth's implicit flow writes) with secret values redacted."""
    if '=' not in text:
        return text
    pairs = parse_qsl(text, keep_blank_values=True)
    kept = [(name, REDACTED if _SECRET_NAME.search(name) else redact(value)) for name, value in pairs]
    return urlencode(kept, safe=':/*@') if kept != pairs else text


def redact(text: str) -> str:
    """`text` with every URL in it redacted (see `redact_url`); text without a URL is returned as it is."""
    if '://' not in text:
        return text

    def one(match: re.Match[str]) -> str:
        found = match.group(0)
        # Punctuation that ends a sentence is not part of the URL.
        stripped = found.rstrip(_TRAILING)
        return redact_url(stripped) + found[len(stripped) :]

    return _URL.sub(one, text)
