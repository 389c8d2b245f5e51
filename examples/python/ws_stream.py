#!/usr/bin/env python3
"""Sends records to a streamgate stream over its WebSocket and reads their results.

It opens ws://HOST:PORT/v1/streams/{stream}/results?from=latest with the API key
in the x-api-key header (the `websockets` package, asyncio client), sends N
records {"data": {"n": i}, "id": i} on the socket, and reads what the server
answers on it: an ack per record (its SendData cursor, "i-..."), in the order
sent, and the results as the stream's processing produces them. Results are
matched to the records by their source cursor, so other writers' records on the
same stream are passed over. It prints one JSON line per ack and per result
(each result after its record's ack), then {"step": "done"}, and exits 0 once
every record has its result; it exits 1 on a refused upgrade (the HTTP status
and the server's code), a refused record, an error frame, the socket closing
early, or when --timeout runs out (what failed goes to stderr, and a last JSON
line with "error"). The stream must have been started (StartStream).

    python ws_stream.py --url ws://localhost:8080 --stream sensor-1 --key "$STREAMGATE_API_KEY" --send 3
"""
import argparse
import asyncio
import json
import os
import sys
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


class Failed(Exception):
    """Something the server answered that ends the run; `fields` go on the error line."""

    def __init__(self, message: str, **fields):
        super().__init__(message)
        self.fields = fields


def emit(step: str, **fields) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


class Progress:
    """What the run has seen so far: the acks (record id -> cursor) and the results of acked records."""

    def __init__(self, records: int):
        self.records = records
        self.acked = {}  # record id -> its cursor, as acked
        self.ours = set()  # the cursors acked
        self.results = 0
        self.early = {}  # source cursor -> a result that came before any ack named its cursor

    def ack(self, frame: dict) -> None:
        if frame.get("duplicate"):
            # A duplicate gets no new result: waiting for one would only time out.
            raise Failed(f"record {frame.get('id')} was acked as a duplicate", cursor=frame.get("cursor"))
        cursor = frame["cursor"]
        self.acked[frame.get("id")] = cursor
        self.ours.add(cursor)
        emit("ack", id=frame.get("id"), cursor=cursor, duplicate=False)
        if cursor in self.early:
            self.result(self.early.pop(cursor))

    def result(self, result: dict) -> None:
        source = result.get("sourceCursor", "")
        if source not in self.ours:
            self.early[source] = result  # someone else's record, or ours before its ack
            return
        self.results += 1
        emit("result", cursor=result.get("cursor"), source_cursor=source, data=result.get("data"))

    @property
    def complete(self) -> bool:
        return len(self.acked) == self.records and self.results == self.records


def results_url(base: str, stream: str) -> str:
    """The stream's results endpoint under `base` (ws://host:port), watching from the latest result."""
    return f"{base.rstrip('/')}/v1/streams/{quote(stream, safe='')}/results?from=latest"


async def exchange(url: str, key: str, records: int, progress: Progress, timeout: float) -> None:
    async with connect(url, additional_headers={"x-api-key": key}, open_timeout=timeout) as ws:
        # The watch has begun once the handshake is done: every result of these records comes after it.
        for n in range(records):
            await ws.send(json.dumps({"data": {"n": n}, "id": n}))
        while not progress.complete:
            try:
                frame = json.loads(await ws.recv())
            except ConnectionClosed as closed:
                raise Failed(f"the server closed the socket ({closed.rcvd.code if closed.rcvd else 'no close frame'})")
            kind = frame.get("type")
            if kind == "ack":
                progress.ack(frame)
            elif kind == "result":
                progress.result(frame["result"])
            elif kind == "error" and "id" in frame:
                raise Failed(f"record {frame['id']} refused: {frame['code']}: {frame['message']}", code=frame["code"])
            elif kind == "error":
                raise Failed(f"the watch ended: {frame['code']}: {frame['message']}", code=frame["code"],
                             cursor=frame.get("cursor"))
            elif kind == "end":
                raise Failed("the stream was closed before every record had its result")


async def run(args) -> int:
    progress = Progress(args.send)
    url = results_url(args.url, args.stream)
    try:
        await asyncio.wait_for(exchange(url, args.key, args.send, progress, args.timeout), args.timeout)
    except asyncio.TimeoutError:
        return fail(f"timed out after {args.timeout} s with {len(progress.acked)} of {args.send} acks "
                    f"and {progress.results} of {args.send} results")
    except InvalidStatus as refused:
        # The upgrade was refused with a plain HTTP error; its body is the Connect error JSON.
        status = refused.response.status_code
        try:
            body = json.loads(refused.response.body or b"{}")
        except ValueError:
            body = {}
        code, message = body.get("code", ""), body.get("message", "")
        return fail(f"the upgrade was refused with HTTP {status}: {code}: {message}", status=status, code=code)
    except Failed as failure:
        return fail(str(failure), **failure.fields)
    except OSError as error:
        return fail(f"could not connect to {url}: {error}")
    emit("done", acks=len(progress.acked), results=progress.results)
    return 0


def fail(message: str, **fields) -> int:
    print(f"ws_stream: {message}", file=sys.stderr)
    emit("error", message=message, **fields)
    return 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=f"ws://{os.environ.get('STREAMGATE_ADDR', 'localhost:8080')}",
                        help="ws:// or wss:// and host:port of the server (default ws://$STREAMGATE_ADDR, "
                             "else ws://localhost:8080)")
    parser.add_argument("--stream", required=True, help="the stream to send to and watch (it must be started)")
    parser.add_argument("--key", default=os.environ.get("STREAMGATE_API_KEY"),
                        help="the API key, sent as x-api-key (env STREAMGATE_API_KEY)")
    parser.add_argument("--send", type=int, default=3, help="records to send (default 3)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds allowed for the whole run (default 10)")
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("an API key is needed: --key or STREAMGATE_API_KEY")
    if not args.url.startswith(("ws://", "wss://")):
        parser.error("--url must start with ws:// or wss://")
    if args.send < 1:
        parser.error("--send must be at least 1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
