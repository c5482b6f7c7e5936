"""A stock MCP client (the Python `mcp` package) speaks the legacy HTTP+SSE transport of
protocol 2024-11-05 to `taskbox serve --http`: create a task, run `uname -a` in it, delete it.
Usage: python_sse.py SSE_URL TOKEN TASK_NAME. Prints one JSON line per step; exits non-zero on
any failure."""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.sse import sse_client

from _results import structured


async def main(url: str, token: str, name: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with sse_client(url, headers=headers) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            print(json.dumps({"step": "initialize", "server": init.server_info.name}), flush=True)
            tools = await session.list_tools()
            print(json.dumps({"step": "list_tools", "count": len(tools.tools)}), flush=True)
            created = structured(await session.call_tool("create_task_sandbox", {"name": name}))
            task = created["task"]
            print(json.dumps({"step": "create", "status": task["status"], "owner": task["owner"]}), flush=True)
            ran = structured(await session.call_tool("execute_in_task", {"command": "uname -a"}))
            print(json.dumps({"step": "uname", "exit_code": ran["exit_code"], "stdout": ran["stdout"]}), flush=True)
            listed = structured(await session.call_tool("list_tasks", {}))
            print(json.dumps({"step": "list", "total": listed["total"]}), flush=True)
            deleted = structured(await session.call_tool("delete_task", {"task": name, "confirm": True}))
            print(json.dumps({"step": "delete", "deleted": deleted["deleted"]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
