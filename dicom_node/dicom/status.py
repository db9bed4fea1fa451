"""The C-STORE statuses the node answers, by name: the SCP returns them and /metrics counts by them.

Alone in its module so that the metrics, which the SCP's handlers feed, can name a status without
importing the SCP.
"""

from __future__ import annotations

from enum import IntEnum


class StoreStatus(IntEnum):
    """C-STORE response statuses the node sends (PS3.4 B.2.3)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700  # the store or the disk failed; the sender may retry later
    DOES_NOT_MATCH_SOP_CLASS = 0xA900  # a UID every instance must have is missing or invalid: do not retry
    CANNOT_UNDERSTAND = 0xC210  # the dataset cannot be decoded: truncated or malformed
