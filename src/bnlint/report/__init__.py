"""Output formats: one module per format behind one small interface.

The CLI asks `formats()` for the `--format` choices and `get_format(name)` for the
class to write with; nothing here imports rich until the text format writes.
"""

from bnlint.report.registry import (
    STATISTICS_FORMATS,
    Format,
    ReportOptions,
    count_by_code,
    formats,
    get_format,
    register_format,
    write_report,
)

__all__ = ["STATISTICS_FORMATS", "Format", "ReportOptions", "count_by_code", "formats", "get_format",
           "register_format", "write_report"]
