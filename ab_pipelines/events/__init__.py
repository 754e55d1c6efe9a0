"""The Kafka dump format of CONTRACTS section 2: read, parse, validate, write; Kafka itself.

The names below are loaded on first use, so the SDK's Kafka producer (``events.kafka``,
``events.producer``) can be imported without pyarrow.
"""

from importlib import import_module

_WHERE = {
    "DumpFile": "dumps",
    "envelope": "dumps",
    "list_day_files": "dumps",
    "write_dump": "dumps",
    "Rejected": "parse",
    "parse_dump_file": "parse",
    "parse_line": "parse",
    "PARSED_SCHEMA": "schema",
    "REASON_CODES": "schema",
    "TOPICS": "schema",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
