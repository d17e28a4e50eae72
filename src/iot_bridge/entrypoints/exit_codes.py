"""The command line's exit codes (CONTRACT section 1)."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1  # anything else
EXIT_USAGE: Final = 2  # bad usage or invalid config
