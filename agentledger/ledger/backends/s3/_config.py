"""The S3 ledger's configuration: its URL, the non-secret options it may carry, and explicit credentials."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, TypedDict, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from agentledger._redaction import redact
from agentledger.errors import LedgerConfigError

__all__ = [
    'URL_OPTIONS',
    'AddressingStyle',
    'Credentials',
    'S3Options',
    'ServerSideEncryption',
    'checked_options',
    'format_url',
    'parse_url',
]

ServerSideEncryption: TypeAlias = Literal['AES256', 'aws:kms', 'aws:kms:dsse']
"""The `ServerSideEncryption` values S3 accepts on a PUT."""

AddressingStyle: TypeAlias = Literal['auto', 'path', 'virtual']
"""How requests name the bucket: in the host name (`virtual`), in the path (`path`), or as botocore sees fit."""


class S3Options(TypedDict, total=False):
    """The options of an S3 ledger besides its URL, named once for `S3Ledger` and its store (see `S3Ledger`)."""

    endpoint_url: str | None
    region_name: str | None
    aws_access_key_id: str | None
    aws_secret_access_key: str | None
    aws_session_token: str | None
    profile_name: str | None
    sse: ServerSideEncryption | None
    sse_kms_key_id: str | None
    addressing_style: AddressingStyle | None
    request_attempts: int
    connect_timeout_s: float
    read_timeout_s: float
    max_concurrency: int
    cache_bytes: int


_BUCKET = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]')
_PREFIX_SEGMENT = re.compile(r'[^\x00-\x1f\x7f]{1,255}')

URL_OPTIONS = ('endpoint_url', 'region_name', 'profile_name', 'sse', 'sse_kms_key_id', 'addressing_style')
"""The options an S3 ledger URL may carry as query parameters: none of them secret."""
_SSE_VALUES = ('AES256', 'aws:kms', 'aws:kms:dsse')
_ADDRESSING_STYLES = ('auto', 'path', 'virtual')


@dataclass(frozen=True)
class Credentials:
    """Explicit credentials, held until the client is built; their `repr` shows none of them."""

    access_key_id: str | None = field(repr=False)
    secret_access_key: str | None = field(repr=False)
    session_token: str | None = field(repr=False)


def parse_url(url: str) -> tuple[str, str, dict[str, str]]:
    """Split `s3://bucket/prefix?options` into the bucket, the prefix (`''` or ending in `/`) and the options."""
    try:
        parts = urlsplit(url)
    except ValueError as error:
        # A malformed authority (an unclosed IPv6 bracket, say): only the reason is echoed, not the URL.
        raise LedgerConfigError(f'not a valid S3 ledger URL: {error}') from None
    if parts.scheme != 's3':
        raise LedgerConfigError(f'an S3 ledger URL starts with s3://, got scheme {parts.scheme!r}')
    if '@' in parts.netloc:
        raise LedgerConfigError(
            'an S3 ledger URL never carries credentials: use the AWS environment, a profile, or the credential options'
        )
    if not parts.netloc:
        raise LedgerConfigError(
            'an S3 ledger URL names its bucket (s3://BUCKET or s3://BUCKET/prefix): this one has none'
        )
    if not _BUCKET.fullmatch(parts.netloc):
        raise LedgerConfigError(f'{parts.netloc!r} is not a valid S3 bucket name')
    segments = [segment for segment in parts.path.split('/') if segment]
    for segment in segments:
        if segment in ('.', '..') or not _PREFIX_SEGMENT.fullmatch(segment):
            raise LedgerConfigError(
                f'the S3 ledger prefix {parts.path!r} may not contain ".", ".." or control characters'
            )
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in URL_OPTIONS:
            if 'key' in name.lower() or 'secret' in name.lower() or 'token' in name.lower():
                raise LedgerConfigError(
                    'an S3 ledger URL never carries credentials: use the AWS environment, a profile, '
                    'or the credential options'
                )
            raise LedgerConfigError(f'unknown S3 ledger URL option {name!r}; supported: {", ".join(URL_OPTIONS)}')
        options[name] = value
    return parts.netloc, ''.join(f'{segment}/' for segment in segments), options


def checked_options(options: Mapping[str, str]) -> tuple[ServerSideEncryption | None, AddressingStyle | None]:
    """The encryption and addressing style `options` ask for; raises `LedgerConfigError` for values S3 does not know."""
    sse = options.get('sse')
    if sse is not None and sse not in _SSE_VALUES:
        raise LedgerConfigError(f'sse must be one of {", ".join(_SSE_VALUES)}, got {sse!r}')
    if options.get('sse_kms_key_id') is not None and sse not in ('aws:kms', 'aws:kms:dsse'):
        raise LedgerConfigError("sse_kms_key_id needs sse='aws:kms' or 'aws:kms:dsse'")
    style = options.get('addressing_style')
    if style is not None and style not in _ADDRESSING_STYLES:
        raise LedgerConfigError(f'addressing_style must be one of {", ".join(_ADDRESSING_STYLES)}, got {style!r}')
    return cast(ServerSideEncryption | None, sse), cast(AddressingStyle | None, style)


def format_url(bucket: str, prefix: str, options: Mapping[str, str]) -> str:
    """The ledger's URL as it is shown: `s3://bucket/prefix?options`, credentials in an option redacted."""
    query = urlencode([(name, options[name]) for name in URL_OPTIONS if name in options], safe=':/', quote_via=quote)
    path = f'/{prefix.rstrip("/")}' if prefix else ''
    return redact(f's3://{bucket}{path}' + (f'?{query}' if query else ''))
