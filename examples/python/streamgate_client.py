#!/usr/bin/env python3
"""A streamgate client in Python, on the stubs generated from proto/ (gen/).

It walks a stream through its life over gRPC (h2c) with an API key:
StartStream, SendData (unary), SendDataStream (client streaming), WatchResults
from the earliest result, a second watch resumed with after_cursor from the
middle of the first, and CloseStream. It checks each answer, prints one JSON
line per step on stdout, and exits 1 on the first failure (what failed goes to
stderr, and a last JSON line with "error").

    python streamgate_client.py --addr localhost:8080 --api-key KEY
    STREAMGATE_ADDR=localhost:8080 STREAMGATE_API_KEY=KEY python streamgate_client.py
"""
import argparse
import json
import os
import sys
import uuid
from pathlib import Path

# The generated modules import each other as `streamgate.v1.*`: gen/ is their root.
sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

import grpc  # noqa: E402
from google.protobuf import json_format, struct_pb2  # noqa: E402

from streamgate.v1 import stream_service_pb2 as pb  # noqa: E402
from streamgate.v1 import stream_service_pb2_grpc as pb_grpc  # noqa: E402


class CheckFailed(Exception):
    """An answer that is not what the contract promises."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def to_value(obj) -> struct_pb2.Value:
    """A JSON-like Python value as a google.protobuf.Value."""
    return json_format.ParseDict(obj, struct_pb2.Value())


def from_value(value: struct_pb2.Value):
    """A google.protobuf.Value as a plain Python value (whole numbers as ints: JSON numbers are doubles)."""

    def tidy(obj):
        if isinstance(obj, float) and obj.is_integer():
            return int(obj)
        if isinstance(obj, dict):
            return {key: tidy(item) for key, item in obj.items()}
        if isinstance(obj, list):
            return [tidy(item) for item in obj]
        return obj

    return tidy(json_format.MessageToDict(value))


def describe(result: pb.Result) -> dict:
    """The parts of a result this program prints."""
    return {
        "cursor": result.cursor,
        "source_cursor": result.source_cursor,
        "event_id": result.event_id,
        "data": from_value(result.data) if result.HasField("data") else None,
    }


class Client:
    """StreamService calls with the API key as x-api-key metadata and a deadline on each."""

    def __init__(self, channel: grpc.Channel, api_key: str, timeout: float):
        self.stub = pb_grpc.StreamServiceStub(channel)
        self.metadata = (("x-api-key", api_key),)
        self.timeout = timeout

    def start_stream(self, request: pb.StartStreamRequest) -> pb.StartStreamResponse:
        return self.stub.StartStream(request, metadata=self.metadata, timeout=self.timeout)

    def send_data(self, request: pb.SendDataRequest) -> pb.SendDataResponse:
        return self.stub.SendData(request, metadata=self.metadata, timeout=self.timeout)

    def send_data_stream(self, requests) -> pb.SendDataStreamResponse:
        return self.stub.SendDataStream(iter(requests), metadata=self.metadata, timeout=self.timeout)

    def watch(self, request: pb.WatchResultsRequest, count: int) -> list:
        """The first `count` results of a watch; the watch is then cancelled (it stays open for live results)."""
        call = self.stub.WatchResults(request, metadata=self.metadata, timeout=self.timeout)
        results = []
        try:
            for response in call:
                results.append(response.result)
                if len(results) == count:
                    break
        finally:
            call.cancel()
        return results

    def close_stream(self, stream_id: str) -> pb.CloseStreamResponse:
        return self.stub.CloseStream(pb.CloseStreamRequest(stream_id=stream_id), metadata=self.metadata, timeout=self.timeout)


def emit(step: str, **fields) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


def run(client: Client, stream_id: str, records: int) -> None:
    started = client.start_stream(pb.StartStreamRequest(stream_id=stream_id, labels={"client": "python"}))
    check(started.stream.stream_id == stream_id, f"StartStream answered for {started.stream.stream_id!r}")
    check(started.stream.state == pb.STREAM_STATE_OPEN, f"stream {stream_id} is {pb.StreamState.Name(started.stream.state)}")
    emit("start", stream_id=stream_id, created=started.created, state=pb.StreamState.Name(started.stream.state))

    # One record on its own...
    sent = client.send_data(pb.SendDataRequest(stream_id=stream_id, data=to_value({"n": 1, "via": "unary"}), event_id="py-1"))
    check(sent.cursor != "" and not sent.duplicate, f"SendData: cursor {sent.cursor!r}, duplicate {sent.duplicate}")
    emit("send", cursor=sent.cursor)

    # ...then `records` more on one client stream; only the first message names the stream.
    batch = [
        pb.SendDataStreamRequest(
            stream_id=stream_id if n == 2 else "", data=to_value({"n": n, "via": "stream"}), event_id=f"py-{n}"
        )
        for n in range(2, records + 2)
    ]
    summary = client.send_data_stream(batch)
    check(
        summary.accepted == records and summary.rejected == 0 and summary.duplicates == 0,
        f"SendDataStream: {summary.accepted} accepted, {summary.rejected} rejected, {summary.duplicates} duplicates",
    )
    emit("send_stream", accepted=summary.accepted, last_cursor=summary.last_cursor)

    # Every result from the start, in the order sent.
    total = records + 1
    results = client.watch(pb.WatchResultsRequest(stream_id=stream_id, start_position=pb.START_POSITION_EARLIEST), total)
    check(len(results) == total, f"WatchResults ended after {len(results)} of {total} results")
    seen = [describe(result) for result in results]
    check([r["data"]["n"] for r in seen] == list(range(1, total + 1)), f"results out of order: {seen}")
    check(seen[0]["source_cursor"] == sent.cursor, "the first result is not the SendData record")
    check(seen[-1]["source_cursor"] == summary.last_cursor, "the last result is not the last streamed record")
    emit("watch", results=seen)

    # A new watch resumed after the middle result gets exactly the ones after it.
    middle = (total - 1) // 2
    after = results[middle].cursor
    rest = client.watch(pb.WatchResultsRequest(stream_id=stream_id, after_cursor=after), total - middle - 1)
    resumed = [describe(result) for result in rest]
    check(
        [r["cursor"] for r in resumed] == [r["cursor"] for r in seen[middle + 1 :]],
        f"resuming after {after} gave {resumed}",
    )
    emit("resume", after_cursor=after, results=resumed)

    closed = client.close_stream(stream_id)
    check(closed.stream.state == pb.STREAM_STATE_CLOSED, "CloseStream left the stream open")
    emit("close", state=pb.StreamState.Name(closed.stream.state))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default=os.environ.get("STREAMGATE_ADDR", "localhost:8080"),
                        help="host:port of the server (env STREAMGATE_ADDR; default localhost:8080)")
    parser.add_argument("--api-key", default=os.environ.get("STREAMGATE_API_KEY"),
                        help="the API key, sent as x-api-key (env STREAMGATE_API_KEY)")
    parser.add_argument("--stream-id", default=f"python-example-{uuid.uuid4().hex[:8]}",
                        help="the stream to create (default: a new random id)")
    parser.add_argument("--records", type=int, default=4, help="records to send on the client stream (default 4)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds allowed for each call (default 10)")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("an API key is needed: --api-key or STREAMGATE_API_KEY")
    if args.records < 1:
        parser.error("--records must be at least 1")

    with grpc.insecure_channel(args.addr) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.timeout)
            run(Client(channel, args.api_key, args.timeout), args.stream_id, args.records)
        except grpc.FutureTimeoutError:
            return fail(f"could not connect to {args.addr} in {args.timeout} s")
        except grpc.RpcError as error:
            return fail(f"{error.code().name}: {error.details()}", code=error.code().name)
        except CheckFailed as error:
            return fail(str(error))
    emit("done", ok=True)
    return 0


def fail(message: str, **fields) -> int:
    print(f"streamgate_client: {message}", file=sys.stderr)
    emit("error", message=message, **fields)
    return 1


if __name__ == "__main__":
    sys.exit(main())
