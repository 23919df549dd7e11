"""Large payloads kept in the ledger: the external storage driver, decoding, the codec server and gc.

Temporal's history keeps a small reference; the content lives once in the ledger as deduplicated
chunks. Everything here runs outside the workflow sandbox.
"""

from agentledger.payloads._codec_server import CodecServer
from agentledger.payloads._decode import PayloadDecoder
from agentledger.payloads._gc import GcReport, KeptPayload, ReferrerStatus, collect_garbage

__all__ = ['CodecServer', 'GcReport', 'KeptPayload', 'PayloadDecoder', 'ReferrerStatus', 'collect_garbage']
