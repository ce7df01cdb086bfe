"""SMTP throughput, latency and memory: ``seo serve`` beside a bare aiosmtpd server.

A load generator on loopback sends 2 KB messages, one recipient each, over 1, 8 and 32 concurrent
connections, in the same run against (a) ``seo serve`` with three trivial OnArrival sinks and
Maildir delivery, and (b) a bare aiosmtpd server whose handler accepts and drops (on asyncio's
loop, and for comparison on uvloop, the loop ``seo serve`` runs on). It prints
messages per second, p50/p99 latency (MAIL to the reply after the final dot), how long after the
last 250 the last message reached Maildir (delivery runs beside acceptance, at a lower priority),
the whole run's rate end to end (from the first MAIL to the last message in Maildir: what the
server sustains when the load outlasts the spool's buffering), and the peak memory (VmHWM) of
``seo serve``: its listener plus its delivery process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEO = Path(sys.executable).with_name("seo")
LEVELS = (1, 8, 32)
MESSAGES = {1: 400, 8: 2000, 32: 3200}
HEADER = "round server conns   msgs    msg/s   p50 ms   p99 ms"
ROW = "{:>5} {:>6} {:>5} {:>6} {:>8.0f} {:>8.2f} {:>8.2f}"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BODY = (
    b"From: load@example.net\r\nTo: user@example.com\r\nSubject: load test\r\n\r\n"
    + (b"x" * 76 + b"\r\n") * 25
)

BARE_SERVER = """
import asyncio, sys
from aiosmtpd.smtp import SMTP

class Drop:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Drop(), enable_SMTPUTF8=True),
                                      "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()

if sys.argv[2:] == ["uvloop"]:
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def client(port: int, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    writer.write(b"EHLO load.test\r\n")
    await reply(reader)
    for _ in range(count):
        started = time.perf_counter()
        writer.write(b"MAIL FROM:<load@example.net>\r\n")
        assert (await reply(reader)).startswith(b"250")
        writer.write(b"RCPT TO:<user@example.com>\r\n")
        assert (await reply(reader)).startswith(b"250")
        writer.write(b"DATA\r\n")
        assert (await reply(reader)).startswith(b"354")
        writer.write(BODY + b".\r\n")
        answer = await reply(reader)
        assert answer.startswith(b"250"), answer
        latencies.append(time.perf_counter() - started)
    writer.write(b"QUIT\r\n")
    await reply(reader)
    writer.close()


async def load(port: int, connections: int, total: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    each = total // connections
    started = time.perf_counter()
    await asyncio.gather(*(client(port, each, latencies) for _ in range(connections)))
    return each * connections / (time.perf_counter() - started), latencies


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (``seo serve``'s delivery process)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def seo_config(folder: Path, port: int) -> Path:
    config = folder / "seo.toml"
    config.write_text(f"""
metabase = "seo-metabase.db"

[sources."smtp/1"]
listen = "127.0.0.1:{port}"
hostname = "bench.test"
local_domains = ["example.com"]
spool = "spool"

[[bindings]]
source = "smtp/1"
event = "OnArrival"
name = "trivial 1"
sink = "trivial"

[[bindings]]
source = "smtp/1"
event = "OnArrival"
name = "trivial 2"
sink = "trivial"

[[bindings]]
source = "smtp/1"
event = "OnArrival"
name = "trivial 3"
sink = "trivial"

[[bindings]]
source = "smtp/1"
event = "StoreDriver"
name = "Local mailboxes"
sink = "maildir"
sink_properties = {{ root = "mail" }}
""")
    return config


def start(kind: str, folder: Path, port: int) -> subprocess.Popen[bytes]:
    if kind == "seo":
        command = [
            str(SEO),
            "--log-level",
            "warning",
            "serve",
            "--config",
            str(seo_config(folder, port)),
        ]
    else:
        loop = ["uvloop"] if kind == "bare-uv" else []
        command = [sys.executable, "-c", BARE_SERVER, str(port), *loop]
    return subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(kind: str) -> tuple[dict[int, tuple[float, list[float]]], float, float, int, float]:
    """One server of ``kind`` under each load level: rates and latencies, then (for seo) how long
    its spool took to drain, its peak memory, how many messages reached Maildir, and the rate
    of the whole run end to end (first MAIL to the last message in Maildir)."""
    results: dict[int, tuple[float, list[float]]] = {}
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    port = free_port()
    process = start(kind, folder, port)
    drain_seconds = peak = end_to_end = 0.0
    delivered = 0
    try:
        asyncio.run(wait_listening(port))
        first_mail = time.monotonic()
        for connections in LEVELS:
            results[connections] = asyncio.run(load(port, connections, MESSAGES[connections]))
        if kind == "seo":
            started = time.monotonic()
            total = sum(MESSAGES[c] // c * c for c in LEVELS)
            while time.monotonic() - started < 300:
                delivered = sum(1 for _ in (folder / "mail").rglob("new/*"))
                if delivered >= total:
                    break
                time.sleep(0.1)
            drain_seconds = time.monotonic() - started
            end_to_end = delivered / (time.monotonic() - first_mail)
            # The listener and its delivery process: seo serve's memory is both.
            peak = sum(peak_rss_mb(p) for p in [process.pid, *children(process.pid)])
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)
    return results, drain_seconds, peak, delivered, end_to_end


def main() -> int:
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores; 2 KB messages, 1 recipient; "
        f"{ROUNDS} rounds of bare, bare-uv, seo (speed may drift: compare within a round)"
    )
    print(
        "bare: aiosmtpd accepting and dropping, on asyncio's loop; bare-uv: the same on uvloop "
        "(the loop seo serve runs on); seo: seo serve, 3 OnArrival sinks, Maildir delivery"
    )
    print(HEADER)
    ratios: list[float] = []
    uv_ratios: list[float] = []
    peak = 0.0
    for round_number in range(1, ROUNDS + 1):
        rates: dict[str, float] = {}
        for kind in ("bare", "bare-uv", "seo"):
            results, drain_seconds, memory, delivered, end_to_end = measure(kind)
            for connections, (rate, latencies) in results.items():
                cuts = statistics.quantiles(latencies, n=100)
                row = (round_number, kind, connections, len(latencies), rate, *cuts[49::49])
                print(ROW.format(*row[:5], *(c * 1000 for c in row[5:])), flush=True)
            rates[kind] = results[8][0]
            if kind == "seo":
                peak = max(peak, memory)
                print(
                    f"{round_number:>5}    seo: {delivered} messages delivered to Maildir, "
                    f"the last {drain_seconds:.1f}s after the last 250 "
                    f"({end_to_end:.0f} msg/s end to end); peak memory {memory:.1f} MB"
                )
        ratios.append(rates["seo"] / rates["bare"])
        uv_ratios.append(rates["seo"] / rates["bare-uv"])
        print(
            f"{round_number:>5} at 8 connections: seo / bare {ratios[-1]:.2f}, "
            f"seo / bare-uv {uv_ratios[-1]:.2f}",
            flush=True,
        )
    ratio = statistics.median(ratios)
    print(
        f"target at 8 connections: seo >= 0.8 x bare -> median {ratio:.2f} of "
        f"{', '.join(f'{r:.2f}' for r in ratios)} ({'met' if ratio >= 0.8 else 'MISSED'})"
    )
    print(
        f"for comparison, seo / bare-uv at 8 connections: median "
        f"{statistics.median(uv_ratios):.2f} of {', '.join(f'{r:.2f}' for r in uv_ratios)}"
    )
    print(f"target peak memory < 150 MB -> {peak:.1f} MB ({'met' if peak < 150 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
