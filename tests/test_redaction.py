"""The one redaction rule (`agentledger._redaction`), its users, and a fuzz pass over ledger URLs and ids."""

from __future__ import annotations

import asyncio
import dataclasses
import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.failure.v1 import Failure
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    FailureConverter,
)
from temporalio.exceptions import ApplicationError

from agentledger import open_ledger
from agentledger._redaction import redact, redact_url
from agentledger.errors import AgentLedgerError, LedgerConfigError, LedgerError, LedgerUnavailableError
from agentledger.ledger.backends.memory import MemoryLedger
from agentledger.ledger.backends.s3 import S3Ledger
from agentledger.model import ErrorInfo
from agentledger.payloads._failures import with_redacted_failures

SECRET = 'pl4nted-s3cret'

secrets = st.text(alphabet=string.ascii_letters + string.digits + '-_.~', min_size=6, max_size=24)
hosts = st.sampled_from(['127.0.0.1:9000', 'minio.internal', 'localhost', 's3.eu-west-1.amazonaws.com'])


def test_user_information_and_secret_query_values_are_redacted() -> None:
    assert redact_url(f'http://user:{SECRET}@host:9000/b') == 'http://***@host:9000/b'
    assert redact_url(f'http://{SECRET}@host/') == 'http://***@host/'
    assert redact_url(f'https://h/o?X-Amz-Signature={SECRET}&partNumber=1') == (
        'https://h/o?X-Amz-Signature=***&partNumber=1'
    )
    assert redact_url(f'https://h/?api_key={SECRET}&token={SECRET}&page=2') == 'https://h/?api_key=***&token=***&page=2'
    assert redact(f's3://b/p?endpoint_url=http://u:{SECRET}@h:9000') == 's3://b/p?endpoint_url=http://***@h:9000'
    assert redact_url(f'http://admin:pa/{SECRET}@host:9000/x') == 'http://***@host:9000/x'
    assert redact_url(f'https://app/callback#access_token={SECRET}&state=1') == (
        'https://app/callback#access_token=***&state=1'
    )
    encoded = quote(f'http://u:{SECRET}@h', safe='')
    assert SECRET not in redact(f's3://b/p?endpoint_url={encoded}&region_name=eu')


def test_what_holds_no_secret_is_left_as_it_is() -> None:
    for text in (
        'sqlite:////var/lib/agentledger/runs.db',
        's3://bucket/prefix?region_name=eu-west-1&sse_kms_key_id=alias/ledger',
        'memory://',
        'no URL at all: user:pass@host is not one',
        'http://localhost:8233/namespaces/default/workflows/wf-1',
    ):
        assert redact(text) == text


def test_a_url_ends_before_the_punctuation_that_ends_its_sentence() -> None:
    assert redact(f'cannot reach "http://u:{SECRET}@h:1/b".') == 'cannot reach "http://***@h:1/b".'
    assert redact(f'(see http://u:{SECRET}@h/x), then') == '(see http://***@h/x), then'


def test_errors_and_stored_error_infos_are_redacted_when_built() -> None:
    error = LedgerUnavailableError(f'could not write to the ledger at s3://b/p?endpoint_url=http://u:{SECRET}@h')
    assert SECRET not in str(error) and isinstance(error, AgentLedgerError)
    info = ErrorInfo(type='ClientError', message=f'Could not connect to "http://k:{SECRET}@h/b"', retryable=True)
    assert SECRET not in info.message and ErrorInfo.from_json(dataclasses.asdict(info)) == info


def test_an_s3_ledger_url_with_credentials_in_its_endpoint_is_shown_redacted() -> None:
    ledger = S3Ledger(f's3://bucket/prefix?endpoint_url=http://admin:{SECRET}@127.0.0.1:9000')
    assert SECRET not in ledger.url and SECRET not in ledger.endpoint
    assert ledger.url == 's3://bucket/prefix?endpoint_url=http://***@127.0.0.1:9000'


def test_an_s3_url_without_a_bucket_says_so() -> None:
    with pytest.raises(LedgerConfigError, match=r'names its bucket .*this one has none'):
        open_ledger('s3:///prefix')


@given(user=secrets, password=secrets, host=hosts, path=st.text(string.ascii_lowercase + '/', max_size=12))
def test_no_user_information_survives(user: str, password: str, host: str, path: str) -> None:
    url = f'http://{user}:{password}@{host}/{path}'
    for text in (url, f'error talking to {url}: refused', f's3://b/p?endpoint_url={url}'):
        redacted = redact(text)
        assert f'{user}:{password}' not in redacted and f':{password}@' not in redacted
        assert redact(redacted) == redacted


@given(text=st.text(max_size=200))
def test_redaction_never_fails_and_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
    if '://' not in text:
        assert once == text


@given(url=st.one_of(st.text(max_size=80), st.builds(lambda rest: f's3://{rest}', st.text(max_size=60))))
def test_any_ledger_url_opens_or_says_why(url: str) -> None:
    """A fuzz pass over ledger URLs: `open_ledger` builds a ledger or raises `LedgerConfigError`, nothing else."""
    try:
        open_ledger(url)
    except LedgerConfigError as error:
        assert str(error)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(run_id=st.text(max_size=60))
def test_any_run_id_is_found_or_not_found_never_an_internal_error(run_id: str) -> None:
    """A fuzz pass over ids: a lookup by a hostile id ends in a specific ledger error, on every backend's reference."""

    async def look_up() -> None:
        async with MemoryLedger() as ledger:
            with pytest.raises(LedgerError):
                await ledger.run(run_id)

    asyncio.run(look_up())


@pytest.mark.parametrize('inner', [DefaultFailureConverter, DefaultFailureConverterWithEncodedAttributes])
def test_failures_reach_temporal_redacted_whatever_the_failure_converter(inner: type[FailureConverter]) -> None:
    """Every message and stack trace of a failure and its causes, encoded attributes included."""
    converter = with_redacted_failures(DataConverter(failure_converter_class=inner))
    try:
        try:
            raise ConnectionError(f'Could not connect to the endpoint URL: "http://k:{SECRET}@h:1/b"')
        except ConnectionError as cause:
            raise ApplicationError(f'agentledger: writing to s3://b/p?endpoint_url=http://k:{SECRET}@h:1') from cause
    except ApplicationError as error:
        failure = Failure()
        converter.failure_converter.to_failure(error, converter.payload_converter, failure)
    assert SECRET not in str(failure) and SECRET not in failure.cause.message
    if failure.HasField('encoded_attributes'):
        assert SECRET not in str(converter.payload_converter.from_payload(failure.encoded_attributes, dict))
        assert SECRET not in str(converter.payload_converter.from_payload(failure.cause.encoded_attributes, dict))
    back = converter.failure_converter.from_failure(failure, converter.payload_converter)
    assert 'http://***@h:1' in str(back)
