"""`S3Store`: the store contract over an S3 prefix, one capability per module over the shared `Bucket` connection."""

from __future__ import annotations

from agentledger.ledger.backends.s3._content import ContentObjects
from agentledger.ledger.backends.s3._indexes import RunIndex
from agentledger.ledger.backends.s3._records import RecordObjects
from agentledger.ledger.backends.s3._references import ReferenceObjects
from agentledger.ledger.backends.s3._runs import RunObjects

__all__ = ['S3Store']


class S3Store(RunObjects, RunIndex, ContentObjects, RecordObjects, ReferenceObjects):
    """The ledger's records in an S3 bucket (see `agentledger.ledger.backends.s3` for the key layout and costs).

    Configured like `S3Ledger`, which builds one; nothing is contacted until `open()`.
    """
