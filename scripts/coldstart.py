#!/usr/bin/env python3
"""Time from spawning `taskbox serve` (stdio) to its reply to `initialize`: coldstart.py BINARY [RUNS]."""
import subprocess, time, json, os, sys, tempfile
binp = sys.argv[1]; runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
home = tempfile.mkdtemp()
init = json.dumps({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}})+"\n"
times=[]
for i in range(runs):
    env=dict(os.environ, TASKBOX_HOME=home, TASKBOX_CONFIG=home+"/none.toml")
    t0=time.perf_counter()
    p=subprocess.Popen([binp,"serve"],stdin=subprocess.PIPE,stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,env=env,cwd=home)
    p.stdin.write(init.encode()); p.stdin.flush()
    line=p.stdout.readline()
    times.append((time.perf_counter()-t0)*1000)
    p.kill(); p.wait()
times.sort()
print("initialize reply ms: median %.1f min %.1f max %.1f (n=%d)"%(times[len(times)//2],times[0],times[-1],runs))
