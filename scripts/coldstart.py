#!/usr/bin/env python3
"""Time from spawning `taskbox serve` (stdio) to its reply to `initialize`.

coldstart.py BINARY [RUNS] [OTHER_BINARY ...]: with several binaries the runs alternate
between them (A B A B ...), so a noisy machine hits them alike; each gets its own data dir."""
import subprocess, time, json, os, sys, tempfile
bins = [sys.argv[1]] + sys.argv[3:]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
homes = {b: tempfile.mkdtemp() for b in bins}
init = json.dumps({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}})+"\n"
times = {b: [] for b in bins}
for i in range(runs):
    for binp in bins:
        home = homes[binp]
        env=dict(os.environ, TASKBOX_HOME=home, TASKBOX_CONFIG=home+"/none.toml")
        t0=time.perf_counter()
        p=subprocess.Popen([binp,"serve"],stdin=subprocess.PIPE,stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,env=env,cwd=home)
        p.stdin.write(init.encode()); p.stdin.flush()
        line=p.stdout.readline()
        times[binp].append((time.perf_counter()-t0)*1000)
        p.kill(); p.wait()
for binp in bins:
    ts = sorted(times[binp])
    label = "" if len(bins) == 1 else binp + ": "
    print("%sinitialize reply ms: median %.1f min %.1f max %.1f (n=%d)"%(label, ts[len(ts)//2],ts[0],ts[-1],runs))
