#!/usr/bin/env python3
"""A flood of slow and malformed HTTP clients never stalls event processing.

usage: http_flood.py PORT [SECONDS]

While 60 connections trickle half a request head and two threads fire
malformed, oversized and wrong-method requests as fast as they can, the
script scrapes /metrics once a second through what is left of the
connection cap and requires events_consumed_total to keep rising: the
workers never wait on the HTTP thread. It prints the figures it measured.
"""
import socket
import sys
import threading
import time
import urllib.request

port = int(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0
stop = threading.Event()
sent = {"malformed": 0, "answered": 0, "refused": 0}
lock = threading.Lock()

BAD = [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"GET /metrics HTTP/9.9\r\n\r\n",
    b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
    b"GET /v1/touchpoints/%zz HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nX: \x01\r\n\r\n",
]


def hammer(seed):
    i = seed
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(BAD[i % len(BAD)])
                got = s.recv(64)
            with lock:
                sent["malformed"] += 1
                sent["answered" if got.startswith(b"HTTP/1.1 4") else "refused"] += 1
        except OSError:
            with lock:
                sent["refused"] += 1
        i += 1


def consumed():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        body = r.read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
               if l.startswith("touchpulse_events_consumed_total{"))


slow = []
for _ in range(60):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(b"GET /metr")
    slow.append(s)
threads = [threading.Thread(target=hammer, args=(k,)) for k in range(2)]
for t in threads:
    t.start()

samples = []
end = time.time() + seconds
while time.time() < end:
    try:
        samples.append(consumed())
    except OSError:
        pass  # the cap refused us this time: the flood is working
    time.sleep(1)
stop.set()
for t in threads:
    t.join()
for s in slow:
    s.close()

rises = sum(1 for a, b in zip(samples, samples[1:]) if b > a)
print(f"http flood: {seconds:.0f} s, 60 slow connections, {sent['malformed']} malformed requests "
      f"({sent['answered']} answered 4xx, {sent['refused']} refused or cut); "
      f"{len(samples)} scrapes, consumed {samples[0] if samples else 0:.0f} -> "
      f"{samples[-1] if samples else 0:.0f}, rising {rises} times")
if len(samples) < 3 or rises < len(samples) - 2 or sent["answered"] == 0:
    print("http flood: FAIL: event processing did not keep going under the flood", file=sys.stderr)
    sys.exit(1)
