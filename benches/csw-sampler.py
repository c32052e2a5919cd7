#!/usr/bin/env python3
"""Context switches of a process whose threads come and go (a target's connection threads end
with their sessions): samples every thread's count every 50 ms until SIGTERM, then writes the
sum over threads of their switches since the start (since their birth for threads started later) to OUT. A thread's final few switches,
after its last sample, may be missed.
usage: csw-sampler.py PID OUT"""
import glob
import signal
import sys
import time

pid, out = sys.argv[1], sys.argv[2]
first, last = {}, {}
stop = False
sweep = 0


def handler(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, handler)
while True:
    for f in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            n = sum(int(l.split()[1]) for l in open(f) if "ctxt_switches" in l)
        except (OSError, ValueError, IndexError):
            continue
        # Threads there at the start count from then; threads born later, from their birth.
        first.setdefault(f, n if sweep == 0 else 0)
        last[f] = n
    sweep += 1
    if stop:
        break
    time.sleep(0.05)
open(out, "w").write(str(sum(last[f] - first[f] for f in last)))
