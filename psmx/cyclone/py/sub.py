"""An unmodified Cyclone DDS 11.0.1 Python subscriber (the PyPI binding) of
the host program's `shmslot_test::Flat` topic: the counterpart of
`cyclone_host sub fixed COUNT` for the mixed-deployment test.

    python sub.py COUNT

Prints "ready" once matched, then one line
"received N in_order N checksum_ok N" (in_order: new sequence numbers in
increasing order), then "extra N" (samples beyond COUNT).
"""
import sys
import time
from dataclasses import dataclass

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import array, byte, uint32
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration


@dataclass
class Flat(IdlStruct, typename="shmslot_test::Flat"):
    seq: uint32
    checksum: uint32
    data: array[byte, 1016]


def checksum(seq, data):
    h = 2166136261 ^ seq
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def main():
    count = int(sys.argv[1])
    dp = DomainParticipant()
    tp = Topic(dp, "shmslot_fixed", Flat)
    qos = Qos(Policy.Reliability.Reliable(duration(seconds=10)), Policy.History.KeepAll)
    rd = DataReader(dp, tp, qos=qos)
    while rd.get_subscription_matched_status().current_count < 1:
        time.sleep(0.01)
    print("ready", flush=True)
    received = in_order = ok = 0
    last = -1
    seen = set()
    deadline = time.monotonic() + 30
    while received < count and time.monotonic() < deadline:
        samples = rd.take(N=256)
        if not samples:
            time.sleep(0.001)
            continue
        for s in samples:
            fresh = s.seq not in seen
            seen.add(s.seq)
            in_order += fresh and s.seq > last
            last = s.seq
            ok += s.checksum == checksum(s.seq, s.data)
            received += 1
    print(f"received {received} in_order {in_order} checksum_ok {ok} loans_in_shm 0", flush=True)
    time.sleep(0.3)
    print(f"extra {len(rd.take(N=1000))}", flush=True)
    return 0 if received == count else 1


if __name__ == "__main__":
    sys.exit(main())
