"""``python examples/fleet``: three replicas on one PostgreSQL, drained and killed under load.

What a team running `apex-grpc serve` as a fleet sees, on one machine:

1. a throwaway PostgreSQL (or yours: ``--database URL``), shared by every replica;
2. three replicas, ``apex-grpc serve --database URL``, each with its own data directory
   (the web-search index stays per replica);
3. one AsyncApexClient with ``load_balancing="round_robin"`` over the three, and a mixed load:
   unary chat, streamed chat, stored chats created and listed;
4. SIGTERM to one replica (it drains: NOT_SERVING, serves on, then closes), later SIGKILL to
   another; the third carries on;
5. the counts: every call answered, but streams cut off mid-answer (StreamInterruptedError:
   they cannot resume), and every stored chat the fleet acknowledged still listed.

Exit status 0 when nothing was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import apex_grpc as mc

KEY = "fleet-example-key"
USER = [{"role": "user", "content": "What does a replica do when it drains?"}]


class Replica:
    """One ``apex-grpc serve`` process on 127.0.0.1 (echo engine: no model needed)."""

    def __init__(self, number: int, database: str, folder: Path, drain_delay: float) -> None:
        self.name = f"replica-{number}"
        self.data_dir = folder / self.name
        self.data_dir.mkdir()
        port_file = self.data_dir / "port"
        self.log = self.data_dir / "server.log"
        command = [
            sys.executable, "-m", "apex_grpc_server",
            "--engine", "echo", "--echo-delay", "0.05",
            "--database", database, "--data-dir", str(self.data_dir),
            "--port", "0", "--port-file", str(port_file), "--api-key", KEY,
            "--drain-delay", str(drain_delay), "--no-default-corpus", "--log-level", "INFO",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.address = f"127.0.0.1:{int(port_file.read_text())}"

    def calls_served(self) -> int:
        """Calls this replica logged (one INFO line per call)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text.count("apex_grpc_server: /apex.v1.ApexService/")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """The given database, or a throwaway local PostgreSQL for the length of the run."""
    if url:
        yield url
        return
    from tools.local_postgres import LocalPostgres

    with LocalPostgres() as postgres:
        yield postgres.create_database("apex_fleet")


async def load(
    client: mc.AsyncApexClient, seconds: float, workers: int, acknowledged: list[str]
) -> collections.Counter[str]:
    """`workers` callers in a loop for `seconds`: chat, stream, store a chat, list chats."""
    outcomes: collections.Counter[str] = collections.Counter()
    stop_at = time.monotonic() + seconds

    async def call(kind: str) -> None:
        try:
            if kind == "unary":
                await client.chat.completions.create(messages=USER)
            elif kind == "stream":
                stream = await client.chat.completions.create(messages=USER, stream=True)
                await stream.text()
            elif kind == "store":
                created = await client.chats.create("Where is my chat stored?")
                acknowledged.append(created.parsed_chat.id)
            else:
                await client.chats.list_sessions()
            outcomes[f"{kind}: answered"] += 1
        except mc.StreamInterruptedError:
            outcomes[f"{kind}: cut off mid-answer by the SIGKILL (cannot resume)"] += 1
        except mc.ApexError as error:
            outcomes[f"{kind}: FAILED {type(error).__name__}"] += 1

    async def worker(number: int) -> None:
        kinds = ("unary", "stream", "store", "list")
        turn = number
        while time.monotonic() < stop_at:
            await call(kinds[turn % len(kinds)])
            turn += 1

    await asyncio.gather(*(worker(number) for number in range(workers)))
    return outcomes


async def run(args: argparse.Namespace, url: str, folder: Path) -> int:
    replicas = [Replica(number, url, folder, args.drain_delay) for number in range(3)]
    try:
        target = "ipv4:" + ",".join(replica.address for replica in replicas)
        print(f"3 replicas on one PostgreSQL: {target}")
        acknowledged: list[str] = []
        async with mc.AsyncApexClient(
            api_key=KEY, base_url=target, secure=False, load_balancing="round_robin"
        ) as client:

            async def faults() -> None:
                await asyncio.sleep(args.seconds * 0.25)
                replicas[0].process.send_signal(signal.SIGTERM)
                print(f"t={args.seconds * 0.25:.1f}s  SIGTERM {replicas[0].name} (drains)")
                await asyncio.sleep(args.seconds * 0.35)
                replicas[1].process.kill()
                print(f"t={args.seconds * 0.6:.1f}s  SIGKILL {replicas[1].name}")

            outcomes, _ = await asyncio.gather(
                load(client, args.seconds, args.workers, acknowledged), faults()
            )
            listed = {chat.id for chat in (await client.chats.list_sessions()).chat_sessions}
        lost = [chat_id for chat_id in acknowledged if chat_id not in listed]
        calls = sum(outcomes.values())
        print(f"\n{calls} calls from {args.workers} callers in {args.seconds:g} s:")
        for outcome, count in sorted(outcomes.items()):
            print(f"  {count:6d}  {outcome}")
        print("calls each replica served:", ", ".join(
            f"{replica.name} {replica.calls_served()}" for replica in replicas
        ))  # fmt: skip
        drained = replicas[0].process.wait(30)
        print(f"{replicas[0].name} (SIGTERM) exited with status {drained}")
        print(
            f"stored chats: {len(acknowledged)} acknowledged, {len(acknowledged) - len(lost)}"
            f" listed after the faults, {len(lost)} lost"
        )
        failed = sum(count for outcome, count in outcomes.items() if "FAILED" in outcome)
        ok = failed == 0 and not lost and drained == 0
        print("nothing lost" if ok else "SOMETHING WAS LOST")
        return 0 if ok else 1
    finally:
        for replica in replicas:
            replica.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python examples/fleet", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--database", help="a PostgreSQL URL (default: start a throwaway one)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the load (8)")
    parser.add_argument("--workers", type=int, default=48, help="concurrent callers (48)")
    parser.add_argument("--drain-delay", type=float, default=1.0, help="replicas' (1 s)")
    args = parser.parse_args()
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # an application may quiet grpc core
    with (
        tempfile.TemporaryDirectory(prefix="apex-fleet-") as folder,
        database(args.database) as url,
    ):
        return asyncio.run(run(args, url, Path(folder)))


if __name__ == "__main__":
    sys.exit(main())
