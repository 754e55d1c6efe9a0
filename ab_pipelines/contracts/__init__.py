"""The contracts both sides of a seam import, each written once (docs/architecture.md).

- :mod:`.hashing`: the bucket function and range picking (CONTRACTS section 6), for the SDK, the
  Spark assigner, the publisher and the simulator;
- :mod:`.payload`: the signed edge payload's schema (docs/edge-config.md), for the publisher and
  the SDK;
- :mod:`.envelope`: the Kafka record envelope, the dump file layout and the event values
  (CONTRACTS section 2), for the writers (SDK sinks, producer, simulator) and landing;
- :mod:`.approval`: an experiment's content sha and whether its approvals count (CONTRACTS
  section 3), for the approver, ``abp validate`` and the dashboard.

Standard library only, with one exception: :mod:`.hashing` imports ``mmh3``, the SDK's one
hashing dependency (the other, ``cryptography``, is the SDK's signing, not a contract). Nothing
here imports the rest of ``ab_pipelines``, so the SDK installs and imports without the platform.
"""

__all__: list[str] = []
