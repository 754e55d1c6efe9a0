"""The Kafka dump format of CONTRACTS section 2: read, parse, validate, write."""

from ab_pipelines.events.dumps import DumpFile, envelope, list_day_files, write_dump
from ab_pipelines.events.parse import Rejected, parse_dump_file, parse_line
from ab_pipelines.events.schema import PARSED_SCHEMA, REASON_CODES, TOPICS

__all__ = [
    "PARSED_SCHEMA",
    "REASON_CODES",
    "TOPICS",
    "DumpFile",
    "Rejected",
    "envelope",
    "list_day_files",
    "parse_dump_file",
    "parse_line",
    "write_dump",
]
