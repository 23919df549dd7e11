"""`S3Ledger`: a ledger in an S3 bucket (AWS S3, MinIO, R2 or any S3-compatible store) shared by a fleet of workers.

Every worker on every host points at one `s3://bucket/prefix` and gets the same ledger `SqliteLedger`
gives one host. S3 has no transactions and no counters, so the layout uses only what S3 decides
atomically for one object: a conditional PUT. `If-None-Match: *` creates an object only if the key
is free, `If-Match: <etag>` replaces it only if nobody replaced it since it was read. Both need a
store that enforces them (AWS S3 since 2024, MinIO, R2); `open()` checks that the store does.

Key layout, under `<prefix>/`::

    agentledger.json                         marker: {"format": "agentledger.s3", "version": 2}
    runs/<run id>/run.json                   the RunRecord. Created with If-None-Match; every start and seal
                                             folds into it with `apply_run_start` / `apply_seal` in a
                                             compare-and-swap loop (GET, fold, PUT If-Match the ETag read;
                                             a 412 means another writer won, so read and fold again).
    runs/<run id>/log/<slot>.json            the run's log: objects numbered 1, 2, 3, ... (12 digits, so keys sort
                                             as numbers), each created with If-None-Match and holding
                                             {"entries": [...]}: a batch of events ({"event": StepEvent.to_json()
                                             without `seq` and `state`}) and snapshot markers ({"snapshot": id}).
                                             An entry's `seq` is its place: slot * 1024 + position. A repair
                                             (`reconcile`) rewrites an entry in place, or to `null` to remove it.
    runs/<run id>/acceptances/<sha256(key)>.json
                                             one immutable object per Acceptance, named by the SHA-256 of its
                                             key and created with If-None-Match: one delivered again gets a
                                             412 and changes nothing.
    runs/<run id>/snapshots/<snapshot id>.json
                                             one manifest per snapshot: {"seq": n, "snapshot": SnapshotRecord},
                                             `n` the place of its marker in the log.
    messages/<hash[:2]>/<hash>               message content, addressed by its SHA-256 and created with
                                             If-None-Match; content of 16 KiB or more is looked up (HEAD)
                                             first, so what is stored already is not sent again.
    blobs/<hash[:2]>/<hash>                  binary parts, likewise; also the FastCDC chunks and manifests of
                                             payloads stored through Temporal's external storage.
    payload-refs/<manifest>/<sha256(namespace + "|" + workflow id)>.json
                                             `PayloadReference.to_json()`: that workflow's history references
                                             the payload stored under that manifest hash. A later store replaces
                                             it by compare-and-swap (`stored_at` only moves forward); deleted by
                                             `agentledger gc` together with the payload.
    records/<namespace>/keys/<sha256(key)>.json
                                             one keyed record (model-call journal entries under `journal`,
                                             once-only effects under `effects`): {"namespace", "key", "scope",
                                             "value"}. Created with If-None-Match (of two racing creators
                                             exactly one gets a 2xx), replaced with If-Match the ETag read
                                             (a 412 means another writer replaced it first); the ETag is the
                                             record's version.
    records/<namespace>/scopes/<sha256(scope)[:32]>/<sha256(key)>
                                             empty objects: the records of one scope (a workflow id), written
                                             before the record is created, so a record that exists is always
                                             listed; an entry whose record is missing or of another scope is
                                             skipped.
    index/runs/all/<inverted start time>-<run id>
    index/runs/<field>/<sha256(value)[:32]>/<inverted start time>-<run id>
                                             empty objects. The inverted start time (microseconds since the
                                             epoch, subtracted from a constant, zero-padded) makes a listing
                                             return the newest run first, so `runs(limit=n)` lists about n
                                             keys and reads n run records however large the bucket grows.
                                             `field` is `agent`, `conversation`, `parent`, `workflow` or
                                             `forked-from`: facts a run has from its start and never changes,
                                             so their indexes are written once, before the run record (a
                                             run that exists is always listed; an entry whose run record is
                                             missing or started at another time is skipped).
    index/runs/status/<sha256(status)[:32]>/<inverted start time>-<run id>
    index/runs/agent-status/<sha256(agent + "|" + status)[:32]>/<inverted start time>-<run id>
                                             empty objects listing the runs that have a rare status
                                             (`failed`, `parked`, `awaiting_approval`, `cancelled`,
                                             `terminated`) while they
                                             have it: written before the fold that gives the run the
                                             status, deleted after the fold that takes it away (an entry
                                             left behind is skipped: the record says otherwise). Common
                                             statuses (`completed`, `running`) are filtered on the records
                                             of another index, where they are met within a few records;
                                             indexing them would cost every run writes. So are all
                                             statuses in a ledger begun with layout 1.

Layout 1 (agentledger 0.2 and earlier) numbered events with a counter object per run (`runs/<id>/seq`, advanced by
compare-and-swap) and kept one object per event (`runs/<id>/events/<sha256(key)>.json`). This code
reads both (and lists runs of such a ledger by status without the status index, which its older runs
lack): a ledger begun with layout 1 has its marker rewritten to version 2 with `"first_version": 1`
when it is first opened read-write, and an old run's log starts past its counter. Workers of 0.2 that
start after that refuse the prefix; upgrade every worker of a fleet before runs in flight are written
by both versions at once, since the two versions do not order each other's events.

The log: a writer creates the slot after the last one it knows exists (If-None-Match). Creating it is
the whole write; the slot it lands in is the order. A writer that knows less than the bucket meets the
slots written since (412), moves past each, and after four in a row lists the log to jump to its end.
A slot is only tried once the slot before it is known to exist, so the log has no gaps. Writes of one
run in one process go one object at a time; whatever arrives meanwhile (concurrent `record_events`
calls, a snapshot's marker) waits and shares the next object, up to 1024 entries.

Order guarantee: `seq` comes from the log, not from a clock, so it is the same on every host whatever
their clocks say. An event whose write returned before another write of the same run began has the
smaller `seq` (its slot exists, and the later writer lands past every slot that exists); events of one
`record_events` call keep the call's order; writes that overlap in time are ordered by the slots they
land in. That is the causal order the plugin needs: an attempt's `started` is written (and
acknowledged) before its body runs and its end after, and a tool call is only scheduled after the model
request that asked for it completed, which recorded its `completed` before returning. `seq` is per run,
increasing and unique, but not contiguous. A read made while writes are in flight may see an event
before one with a smaller `seq` lands; once they returned, the order is final.

Idempotency: an event is kept once by its key. A write retried after an ambiguous failure (a timeout
after S3 applied the PUT), or an event delivered again, lands in a later slot; reads return each key
once, at its first place, so the first write of a key wins, as on every backend.

Cost per write, in requests (steady state: the process knows the run's log end):
an event, or a batch of them, is 1 PUT. A run start is one PUT per index entry (three or more, in
parallel), one to create the record (no read first) and one for its event. A seal is a PUT of the
record If-Match the ETag this process wrote it with (a GET first when another process wrote it
since, or this one never did), with its event's PUT beside it; a seal to a rare status adds its two
status index entries. An acceptance is 1 PUT. A snapshot is a lookup of its id (a GET), a PUT per
new message or blob (in parallel; content of 16 KiB or more is looked up with a HEAD first), its
marker in the log and its manifest. A process that writes to a run it did not start lists the run's
log once (and, for a run begun with layout 1 whose log is empty, reads its counter once). Reading a
run lists its prefixes and GETs each object once per process: log objects, acceptances and snapshot
manifests are not replaced except by a repair, so they are kept in a cache (`cache_bytes`; a log
object this process wrote goes there at once); message content is read every time, so its hash
check sees what is stored.

Reads are consistent: S3 (since 2020), MinIO and R2 give read-after-write consistency for GET and
LIST, so a write that returned is seen by every later read on any host.

Failures: boto3's calls block, so they run on a thread pool of this ledger's own (`max_concurrency`
threads, as many pooled connections); the event loop never waits on the network. Every call has
short timeouts and a few retries by botocore (standard mode), and the `Ledger` over the store retries
whole writes with backoff; what still fails raises `LedgerUnavailableError` naming what was not
written. Writes are idempotent, so a retry after an ambiguous failure (a timeout after S3 applied
the PUT) stores nothing twice. Refused credentials, a missing bucket or a store that ignores
conditional writes raise `LedgerConfigError` at `open()`, which `LedgerPlugin` calls when a worker
starts; refused credentials and denied access are its subclass `LedgerPermissionError`, raised at once.

Read-only (`S3Ledger(url, read_only=True)`, `?mode=ro` for `open_ledger`): `open()` lists the prefix
and reads the marker (a prefix without one holds no ledger: `LedgerConfigError`), and the store sends
no PUT and no DELETE; every write raises `LedgerReadOnlyError`.

Security: every key is built from validated parts: run ids and snapshot ids must match a strict
pattern (letters, digits, `-`, `_`), content hashes must be SHA-256 hex, and free text (workflow ids,
agent names, idempotency keys) is hashed, so no id can reach outside the prefix. Credentials stay
in memory (the ledger's and its boto3 client's): they are never part of `url` or a `repr`, never
written to the bucket and never in an error message (SigV4 signs with the secret and never sends
it, so no server error can echo it).
`sse` / `sse_kms_key_id` are passed on every PUT.
"""

from __future__ import annotations

from typing import Unpack

from agentledger.ledger._facade import Ledger, RetryPolicy
from agentledger.ledger.backends.s3._config import AddressingStyle, S3Options, ServerSideEncryption
from agentledger.ledger.backends.s3._layout import FORMAT_VERSION
from agentledger.ledger.backends.s3._store import S3Store
from agentledger.model._options import check_options

__all__ = ['FORMAT_VERSION', 'AddressingStyle', 'S3Ledger', 'S3Options', 'S3Store', 'ServerSideEncryption']


class S3Ledger(Ledger):
    """A ledger in an S3 bucket, shared by any number of worker processes on any number of hosts.

    Configure it with a URL and, where the standard AWS chain (environment, shared config and
    credentials files, instance or container roles) is not what you want, explicit options::

        S3Ledger('s3://my-bucket/agents/prod')
        S3Ledger('s3://ledger/dev', endpoint_url='http://localhost:9000', region_name='us-east-1')

    The URL may carry the non-secret options as query parameters (`endpoint_url`, `region_name`,
    `profile_name`, `sse`, `sse_kms_key_id`, `addressing_style`), so `open_ledger` and the CLI's
    `--ledger` can name any S3 ledger; keyword arguments override them. Credentials are never
    accepted in the URL. See the module docstring for the key layout and the guarantees.
    """

    store: S3Store

    def __init__(
        self, url: str, *, retry: RetryPolicy | None = None, read_only: bool = False, **options: Unpack[S3Options]
    ) -> None:
        """Describe the ledger at `url` (`s3://bucket` or `s3://bucket/prefix`); nothing is contacted until `open()`.

        Args:
            url: The bucket and key prefix, optionally with non-secret options as query parameters.
            endpoint_url: An S3-compatible endpoint (MinIO, R2, a loopback test server); by default
                boto3's (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, or AWS S3 itself).
            region_name: The bucket's region; by default boto3's (`AWS_REGION`, the profile).
            aws_access_key_id: With `aws_secret_access_key` (and `aws_session_token` for temporary
                credentials), explicit credentials instead of boto3's chain.
            aws_secret_access_key: See `aws_access_key_id`. Never part of `url`, a `repr` or a message.
            aws_session_token: See `aws_access_key_id`.
            profile_name: A profile of the shared AWS config and credentials files.
            sse: Server-side encryption of every object written (`AES256`, `aws:kms`, `aws:kms:dsse`).
            sse_kms_key_id: The KMS key for `aws:kms` / `aws:kms:dsse` (by default the bucket's or
                the account's default key).
            addressing_style: `path` for stores that serve buckets only under the path (many MinIO
                setups); by default botocore's choice.
            retry: How whole ledger writes are retried (see `RetryPolicy`).
            read_only: Never write: `open()` checks that the prefix holds a ledger (its marker) instead of
                writing the marker, every write raises `LedgerReadOnlyError`, and the credentials need
                only `s3:ListBucket` and `s3:GetObject`.
            request_attempts: How many times botocore sends one request before the call fails
                (standard retry mode, with its own jittered backoff).
            connect_timeout_s: How long one connection attempt may take; short, so an unreachable
                endpoint fails at worker start within seconds.
            read_timeout_s: How long one response may take.
            max_concurrency: Threads (and pooled connections) this ledger uses for S3 calls.
            cache_bytes: Memory for immutable records already read (events, acceptances, snapshot
                manifests); 0 turns the cache off. Message and blob content is read every time, so
                that its hash check sees what is stored.

        """
        check_options('S3Ledger', options, S3Options)
        super().__init__(S3Store(url, read_only=read_only, **options), retry=retry, read_only=read_only)

    @property
    def bucket(self) -> str:
        """The bucket the ledger lives in."""
        return self.store.bucket

    @property
    def prefix(self) -> str:
        """The key prefix of every object of this ledger (`''` for the bucket's root, else ending in `/`)."""
        return self.store.prefix

    @property
    def endpoint(self) -> str:
        """The endpoint the ledger talks to (known for certain once open)."""
        return self.store.endpoint
