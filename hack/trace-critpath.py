#!/usr/bin/env python3
"""Per-request critical path of a stdio hop, from a Go execution trace.

    go tool trace -d=parsed DIR/runtime-d.trace > d.txt   # from: bin/benchruntime -profile DIR -exectrace
    hack/trace-critpath.py runtime d.txt                  # or: relay DIR/stdio-relay.trace's dump

At one connection a request crosses the hop twice; this prints, per request, the medians of
the hop's own segments, from goroutine state transitions and their stacks only:

  in     the handler's read of the request returns -> it starts writing the child's stdin
  isys   the stdin write syscall
  wake   the child's answer is readable (reader goroutine runnable) -> its read returns
  out    the read returns -> the waiting handler is made runnable (parse, route, checks)
  hand   the handler is runnable -> it runs
  resp   the handler runs -> it starts writing the response
  wsys   the response write syscall (includes being preempted by the woken client)

The hop's share of the round trip is about in + isys + wake + out + hand + resp.
"""
import re
import statistics
import sys

KINDS = {
    # stack fragments that identify the reader goroutine, the stdin write and the response write
    "runtime": ("child).readLoop", "child).writeDirect", ("server.writeResponse",)),
    "relay": ("relay).readLoop", "relay).write", ("finishRequest",)),
}
EVENT = re.compile(r"^M=\S+ P=\S+ G=(-?\d+) StateTransition Time=(\d+) GoID=(\d+) (\w+)->(\w+) Reason=\"([^\"]*)\"")


def events(path):
    """Yields (time ns, acting goroutine, goroutine, from, to, reason, stack text)."""
    cur = None
    with open(path) as f:
        for line in f:
            if line.startswith("M="):
                if cur:
                    yield cur[:-1] + (" ".join(cur[-1]),)
                m = EVENT.match(line)
                cur = (int(m.group(2)), int(m.group(1)), int(m.group(3)), m.group(4), m.group(5), m.group(6), []) if m else None
            elif cur is not None and line.startswith("\t") and not line.startswith("\t\t"):
                cur[-1].append(line.strip().split(" @ ")[0])
    if cur:
        yield cur[:-1] + (" ".join(cur[-1]),)


def main():
    kind, path = sys.argv[1], sys.argv[2]
    reader_frag, stdin_frag, resp_frags = KINDS[kind]
    segs = {k: [] for k in ("in", "isys", "wake", "out", "hand", "resp", "wsys")}
    reader = None
    r_wake = r_read = None  # reader goroutine: made runnable, last read returned
    g = {}  # per handler goroutine state

    for t, actor, gid, fr, to, reason, stack in events(path):
        if reader is None and fr == "Running" and to == "Syscall" and reader_frag in stack:
            reader = gid
        if gid == reader:
            if fr == "Waiting" and to == "Runnable":
                r_wake = t
            elif fr == "Syscall" and to == "Running":
                r_read = t
            continue
        s = g.setdefault(gid, {})
        if fr == "Waiting" and to == "Runnable" and actor == reader and "chansend" in stack:
            if r_wake and r_read and r_read >= r_wake:
                segs["wake"].append(r_read - r_wake)
            if r_read:
                segs["out"].append(t - r_read)
            s["ready"] = t
        elif fr == "Runnable" and to == "Running" and "ready" in s:
            segs["hand"].append(t - s.pop("ready"))
            s["ran"] = t
        elif fr == "Running" and to == "Syscall":
            if "ran" in s and any(f in stack for f in resp_frags):
                segs["resp"].append(t - s.pop("ran"))
                s["wsys"] = t
            elif stdin_frag in stack:
                if "read" in s:
                    segs["in"].append(t - s.pop("read"))
                s["isys"] = t
            elif "Read" in stack or "read" in stack:
                s["reading"] = True
        elif fr == "Syscall" and to == "Running":
            if "wsys" in s:
                segs["wsys"].append(t - s.pop("wsys"))
            elif "isys" in s:
                segs["isys"].append(t - s.pop("isys"))
            elif s.pop("reading", False):
                s["read"] = t  # the last read before the stdin write is the one with the request

    hop = 0.0
    for k, v in segs.items():
        if len(v) < 2:
            continue
        q = statistics.quantiles(v, n=4)
        med = statistics.median(v) / 1000
        if k != "wsys":
            hop += med
        print(f"{k:5s} n={len(v):6d}  median {med:7.1f} µs   p25 {q[0]/1000:7.1f}   p75 {q[2]/1000:7.1f}")
    print(f"hop's own segments (in+isys+wake+out+hand+resp, medians): {hop:.1f} µs")


if __name__ == "__main__":
    main()
