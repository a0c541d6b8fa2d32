"""Fast, time-ordered UUIDs for history rows.

``uuid.uuid4()`` reads ``os.urandom`` on every call, which costs ~20 µs on some virtual machines:
more than a whole task run may cost. Row ids do not need cryptographic randomness, so we make
UUID version 7 values (48-bit millisecond timestamp + 74 random bits, RFC 9562) from a PRNG
seeded from the OS. Time order also keeps B-tree inserts local in PostgreSQL.
"""

from __future__ import annotations

import os
import random
import time

_rng = random.Random()


def _reseed() -> None:
    _rng.seed(os.urandom(32))


_reseed()
# a forked child must not repeat its parent's sequence
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A new UUIDv7 as a canonical 36-character string."""
    ms = time.time_ns() // 1_000_000
    rand = _rng.getrandbits(74)
    # version 7 in bits 48-51, variant 0b10 in bits 64-65
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (
        rand & 0x3FFFFFFFFFFFFFFF
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# memorable run names ("amber-otter"), for flow and task runs without a name of their own
_ADJECTIVES = (
    "amber agile bold brave bright calm clever cosmic crimson daring eager electric fancy "
    "gentle golden happy hidden honest icy jolly keen lively lucky mellow mighty misty noble "
    "olive patient proud quick quiet rapid rustic sage silent silver smart sturdy swift tidy "
    "turquoise vivid warm wise witty zealous"
).split()
_ANIMALS = (
    "albatross badger beaver bison bobcat camel cheetah condor coyote crane dingo dolphin "
    "eagle falcon ferret finch fox gazelle gecko heron hyena ibis jackal jaguar kestrel koala "
    "lemur leopard lynx marmot mink moose narwhal ocelot okapi orca otter owl panther parrot "
    "pelican puffin quail raven salamander seal shrew sparrow stork tapir tiger toucan turtle "
    "viper walrus wolf wombat yak zebra"
).split()


def generate_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_ANIMALS)}"
