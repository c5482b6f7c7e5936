#!/usr/bin/env python3
"""The shared package caches' gain: the same pip and npm installs in a first task and in a
second task of the same owner, with `[caches] enabled = true` and, as the control, without.

cache_bench.py BINARY [ROUNDS]: each round uses fresh data directories (so fresh cache volumes)
and runs, alternating, caches on then off: task 1 installs, task 2 installs the same set. Times
are the executions' own `duration_ms` (the command inside the container, from the server's
record). Needs Docker, the taskbox-developer image and the package registries (egress tasks
trust the host's certificates). Everything it makes is removed at the end: tasks, volumes
(`taskbox volumes prune`), data directories. CACHE_BENCH_NPM_FLAGS adds flags to npm install
(e.g. --prefer-offline, which takes package documents from the cache without asking the
registry)."""
import json, os, shutil, statistics, subprocess, sys, tempfile

PIP = "/tmp/venv/bin/pip install --disable-pip-version-check -q requests rich"
NPM = ("cd /tmp/n && npm install --no-audit --no-fund --loglevel=error "
       + os.environ.get("CACHE_BENCH_NPM_FLAGS", "") + " left-pad is-number express")


class Server:
    def __init__(self, binary, home):
        env = dict(os.environ, TASKBOX_HOME=home, TASKBOX_CONFIG=os.path.join(home, "config.toml"))
        self.proc = subprocess.Popen([binary, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=home)
        self.next_id = 0
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "cache-bench", "version": "0"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message):
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, method, params):
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the server closed its output")
            reply = json.loads(line)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply["result"]

    def tool(self, name, arguments):
        result = self.request("tools/call", {"name": name, "arguments": arguments})
        if result.get("isError"):
            raise RuntimeError(f"{name}: {result['content'][0]['text']}")
        return result["structuredContent"]

    def run(self, task, command):
        r = self.tool("execute_in_task", {"task": task, "command": command, "timeout_s": 900})
        if r["exit_code"] != 0:
            raise RuntimeError(f"{command}: exit {r['exit_code']}: {r['stderr'][-2000:]}")
        return r["duration_ms"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def one_round(binary, caches):
    home = tempfile.mkdtemp(prefix="taskbox-cache-bench-")
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write(f"[caches]\nenabled = {'true' if caches else 'false'}\n")
    server = Server(binary, home)
    times = []
    try:
        for name in ["first", "second"]:
            server.tool("create_task_sandbox", {"name": name, "image": "taskbox-developer", "network": "egress"})
            server.run(name, "python3 -m venv /tmp/venv && mkdir -p /tmp/n")
            times.append((server.run(name, PIP), server.run(name, NPM)))
        for name in ["first", "second"]:
            server.tool("delete_task", {"task": name, "confirm": True})
    finally:
        server.close()
        env = dict(os.environ, TASKBOX_HOME=home, TASKBOX_CONFIG=os.path.join(home, "config.toml"))
        subprocess.run([binary, "volumes", "prune"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([binary, "gc"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)
    return times


def main():
    binary = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    results = {True: [], False: []}
    for i in range(rounds):
        for caches in (True, False):
            t = one_round(binary, caches)
            results[caches].append(t)
            label = "caches on " if caches else "caches off"
            print(f"round {i + 1} {label}: pip first {t[0][0]} ms, second {t[1][0]} ms; "
                  f"npm first {t[0][1]} ms, second {t[1][1]} ms", flush=True)
    for caches in (True, False):
        label = "caches on " if caches else "caches off"
        rs = results[caches]
        for k, tool in enumerate(["pip", "npm"]):
            first = statistics.median(r[0][k] for r in rs)
            second = statistics.median(r[1][k] for r in rs)
            ratios = [r[1][k] / r[0][k] for r in rs]
            print(f"{label} {tool}: first task median {first:.0f} ms, second task median {second:.0f} ms, "
                  f"second/first per round {', '.join(f'{x:.2f}' for x in ratios)} (n={len(rs)})")


if __name__ == "__main__":
    main()
