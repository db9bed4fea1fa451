import os

# A stray hub id must fail at once, not retry for most of a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
