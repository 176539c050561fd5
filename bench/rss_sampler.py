#!/usr/bin/env python3
"""bench/rss_sampler.py PID FILE [INTERVAL_S]

Sample VmRSS, RssAnon and RssShmem (kB) of process PID from
/proc/PID/status every INTERVAL_S seconds (default 0.002) into FILE, one
tab-separated line per sample, until the process ends or this sampler gets
SIGTERM.  The first line is flushed at once, so that the caller can wait
for it and know that sampling has begun.  Used by bench/run.sh for the worker's memory: a batch of 1000
orders takes some 30 ms, and its peak lasts a few of them, so a shell loop
polling every 100 ms misses it as often as not.
"""
import signal
import sys
import time

FIELDS = ("VmRSS:", "RssAnon:", "RssShmem:")


def main():
    pid, path = sys.argv[1], sys.argv[2]
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.002
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with open(path, "w") as out:
        first = True
        while not stop:
            try:
                with open(f"/proc/{pid}/status") as f:
                    values = dict.fromkeys(FIELDS, "0")
                    for line in f:
                        key = line.split(None, 1)[0]
                        if key in values:
                            values[key] = line.split()[1]
            except (FileNotFoundError, ProcessLookupError):
                break
            out.write("\t".join(values[k] for k in FIELDS) + "\n")
            if first:
                # the caller waits for this line before it starts the drain
                out.flush()
                first = False
            time.sleep(interval)


if __name__ == "__main__":
    main()
