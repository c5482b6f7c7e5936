"""A stock MCP client (the Python `mcp` package) drives `taskbox serve` over stdio: create a
task, run `uname -a` in it, delete it. Usage: python_smoke.py TASKBOX_BINARY TASK_NAME
(TASKBOX_HOME comes from the environment). Prints one JSON line per step; exits non-zero on
any failure."""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from _results import structured


async def main(binary: str, name: str) -> None:
    params = StdioServerParameters(command=binary, args=["serve"], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            print(json.dumps({"step": "initialize", "server": init.server_info.name}), flush=True)
            await session.set_logging_level("info")
            tools = await session.list_tools()
            print(json.dumps({"step": "list_tools", "count": len(tools.tools)}), flush=True)
            created = structured(await session.call_tool("create_task_sandbox", {"name": name}))
            print(json.dumps({"step": "create", "status": created["task"]["status"]}), flush=True)
            ran = structured(await session.call_tool("execute_in_task", {"command": "uname -a"}))
            print(json.dumps({"step": "uname", "exit_code": ran["exit_code"], "stdout": ran["stdout"]}), flush=True)
            deleted = structured(await session.call_tool("delete_task", {"task": name, "confirm": True}))
            print(json.dumps({"step": "delete", "deleted": deleted["deleted"]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
