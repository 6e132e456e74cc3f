"""Readable generated run names like ``brave-otter-42``."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring", "eager", "fancy",
    "fearless", "gentle", "golden", "happy", "hidden", "humble", "jolly", "keen", "lively", "lucky", "mellow",
    "merry", "misty", "noble", "polite", "proud", "quick", "quiet", "rapid", "silent", "silver", "smart",
    "snowy", "solid", "steady", "sunny", "swift", "tidy", "vivid", "warm", "wise", "witty", "zesty",
)  # fmt: skip
_ANIMALS = (
    "badger", "beaver", "bison", "crane", "dingo", "dolphin", "eagle", "falcon", "ferret", "finch", "fox",
    "gecko", "heron", "ibis", "jaguar", "koala", "lemur", "lynx", "marten", "moose", "newt", "ocelot", "otter",
    "owl", "panda", "pelican", "puffin", "quail", "raven", "seal", "shrew", "sloth", "stoat", "swan", "tapir",
    "tiger", "toucan", "walrus", "weasel", "wombat", "yak", "zebra",
)  # fmt: skip


def generate_run_name() -> str:
    """A random ``adjective-animal-NN`` name; not unique by itself (runs are identified by id)."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_ANIMALS)}-{secrets.randbelow(100)}"
