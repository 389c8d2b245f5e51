// Command streamgate-go-client is a small client of streamgate's StreamService,
// written against the code that buf generates from the project's proto/ (see
// buf.gen.yaml). It walks through a stream's whole life over plain gRPC (h2c),
// with an API key sent as x-api-key metadata on every call:
//
//	StartStream → SendData (unary) → SendDataStream (client streaming) →
//	WatchResults from EARLIEST → WatchResults resumed with after_cursor from the
//	middle result → CloseStream (the resumed watch then ends with OK) → GetStream
//
// It prints one JSON line per step and checks what the server answers as it
// goes: any failed call or unexpected answer prints a line with "error" and
// exits with status 1.
//
// Usage:
//
//	streamgate-go-client [-addr host:port] [-api-key KEY] [-stream ID] [-records N]
//
// The address and key default to $STREAMGATE_ADDR and $STREAMGATE_API_KEY.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	streamgatev1 "streamgate.example/client/gen/streamgate/v1"
)

func main() {
	addr := flag.String("addr", envOr("STREAMGATE_ADDR", "127.0.0.1:8080"), "server address, host:port ($STREAMGATE_ADDR)")
	apiKey := flag.String("api-key", os.Getenv("STREAMGATE_API_KEY"), "API key sent as x-api-key ($STREAMGATE_API_KEY)")
	streamID := flag.String("stream", "", "stream id to use (default: a new random one)")
	records := flag.Int("records", 3, "records sent on the client stream (at least 1)")
	timeout := flag.Duration("timeout", 30*time.Second, "bound on the whole run")
	flag.Parse()
	if *records < 1 {
		fail("flags", errors.New("-records must be at least 1"))
	}
	if *streamID == "" {
		*streamID = "go-example-" + randomHex(4)
	}

	// Plain-text HTTP/2 (h2c): streamgate serves gRPC on its one port without TLS
	// unless it is configured with a certificate.
	options := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if *apiKey != "" {
		options = append(options, grpc.WithPerRPCCredentials(apiKeyCredentials(*apiKey)))
	}
	conn, err := grpc.NewClient(*addr, options...)
	if err != nil {
		fail("connect", err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	run(ctx, streamgatev1.NewStreamServiceClient(conn), *streamID, *records)
}

// run does every step in order; fail exits on the first that goes wrong.
func run(ctx context.Context, client streamgatev1.StreamServiceClient, streamID string, records int) {
	started, err := client.StartStream(ctx, &streamgatev1.StartStreamRequest{
		StreamId: streamID,
		Labels:   map[string]string{"client": "go"},
	})
	if err != nil {
		fail("start_stream", err)
	}
	emit(map[string]any{
		"step":      "start_stream",
		"stream_id": started.GetStream().GetStreamId(),
		"created":   started.GetCreated(),
		"state":     started.GetStream().GetState().String(),
	})

	// Each record carries an event_id (its idempotency key) and a JSON payload
	// that says which record it is, so the results can be matched to the sends.
	eventIDs := make([]string, 0, 1+records)
	sent, err := client.SendData(ctx, &streamgatev1.SendDataRequest{
		StreamId: streamID,
		EventId:  "go-1",
		Payload:  &streamgatev1.SendDataRequest_Data{Data: record(1)},
	})
	if err != nil {
		fail("send_data", err)
	}
	eventIDs = append(eventIDs, "go-1")
	emit(map[string]any{"step": "send_data", "event_id": "go-1", "cursor": sent.GetCursor(), "duplicate": sent.GetDuplicate()})

	upload, err := client.SendDataStream(ctx)
	if err != nil {
		fail("send_data_stream", err)
	}
	for i := 2; i <= 1+records; i++ {
		eventID := fmt.Sprintf("go-%d", i)
		message := &streamgatev1.SendDataStreamRequest{
			EventId: eventID,
			Payload: &streamgatev1.SendDataStreamRequest_Data{Data: record(i)},
		}
		if i == 2 {
			message.StreamId = streamID // later messages reuse the first one's stream
		}
		if err := upload.Send(message); err != nil && !errors.Is(err, io.EOF) {
			fail("send_data_stream", err)
		}
		// io.EOF from Send means the server already ended the call: its status comes from CloseAndRecv.
		eventIDs = append(eventIDs, eventID)
	}
	summary, err := upload.CloseAndRecv()
	if err != nil {
		fail("send_data_stream", err)
	}
	emit(map[string]any{
		"step":        "send_data_stream",
		"accepted":    summary.GetAccepted(),
		"duplicates":  summary.GetDuplicates(),
		"rejected":    summary.GetRejected(),
		"last_cursor": summary.GetLastCursor(),
	})
	if summary.GetAccepted() != uint64(records) {
		fail("send_data_stream", fmt.Errorf("%d of %d records accepted: %v", summary.GetAccepted(), records, summary.GetRejections()))
	}

	// Every result from the start of the stream: one per record, in send order.
	watchCtx, stopWatch := context.WithCancel(ctx)
	watch, err := client.WatchResults(watchCtx, &streamgatev1.WatchResultsRequest{
		StreamId:      streamID,
		StartPosition: streamgatev1.StartPosition_START_POSITION_EARLIEST,
	})
	if err != nil {
		fail("watch_results", err)
	}
	results, err := receive(watch, len(eventIDs))
	stopWatch() // the stream is still open, so the watch would go on: this client has what it wanted
	if err != nil {
		fail("watch_results", err)
	}
	emit(map[string]any{"step": "watch_results", "start_position": "START_POSITION_EARLIEST", "results": describe(results)})
	for i, result := range results {
		if result.GetEventId() != eventIDs[i] {
			fail("watch_results", fmt.Errorf("result %d has event_id %q, want %q", i, result.GetEventId(), eventIDs[i]))
		}
	}
	if results[0].GetSourceCursor() != sent.GetCursor() {
		fail("watch_results", fmt.Errorf("first result's source_cursor %q is not SendData's cursor %q", results[0].GetSourceCursor(), sent.GetCursor()))
	}

	// Resume after the middle result: exactly the ones after it arrive, and the
	// watch stays open for live results until the stream is closed.
	middle := (len(results) - 1) / 2
	afterCursor := results[middle].GetCursor()
	resumed, err := client.WatchResults(ctx, &streamgatev1.WatchResultsRequest{StreamId: streamID, AfterCursor: afterCursor})
	if err != nil {
		fail("resume", err)
	}
	rest, err := receive(resumed, len(results)-middle-1)
	if err != nil {
		fail("resume", err)
	}
	emit(map[string]any{"step": "resume", "after_cursor": afterCursor, "results": describe(rest)})
	for i, result := range rest {
		want := results[middle+1+i]
		if result.GetCursor() != want.GetCursor() || result.GetEventId() != want.GetEventId() {
			fail("resume", fmt.Errorf("resumed result %d is %s/%s, want %s/%s", i, result.GetCursor(), result.GetEventId(), want.GetCursor(), want.GetEventId()))
		}
	}

	closed, err := client.CloseStream(ctx, &streamgatev1.CloseStreamRequest{StreamId: streamID})
	if err != nil {
		fail("close_stream", err)
	}
	// The resumed watch ends with OK (io.EOF here) once the stream is closed, with nothing after the results it had.
	if extra, err := resumed.Recv(); err == nil {
		fail("close_stream", fmt.Errorf("the resumed watch got another result after the close: %s", extra.GetResult().GetCursor()))
	} else if !errors.Is(err, io.EOF) {
		fail("close_stream", fmt.Errorf("the resumed watch did not end with OK: %w", err))
	}
	emit(map[string]any{"step": "close_stream", "state": closed.GetStream().GetState().String(), "watch_ended": true})

	got, err := client.GetStream(ctx, &streamgatev1.GetStreamRequest{StreamId: streamID})
	if err != nil {
		fail("get_stream", err)
	}
	counts := got.GetCounts()
	emit(map[string]any{
		"step":  "get_stream",
		"state": got.GetStream().GetState().String(),
		"counts": map[string]uint64{
			"accepted": counts.GetAccepted(),
			"results":  counts.GetResults(),
		},
	})
	if got.GetStream().GetState() != streamgatev1.StreamState_STREAM_STATE_CLOSED {
		fail("get_stream", fmt.Errorf("the stream is %s after CloseStream", got.GetStream().GetState()))
	}
	emit(map[string]any{"step": "done", "stream_id": streamID})
}

// receive reads exactly n results from a watch.
func receive(watch grpc.ServerStreamingClient[streamgatev1.WatchResultsResponse], n int) ([]*streamgatev1.Result, error) {
	results := make([]*streamgatev1.Result, 0, n)
	for len(results) < n {
		message, err := watch.Recv()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the watch ended after %d of %d results", len(results), n)
		}
		if err != nil {
			return nil, err
		}
		results = append(results, message.GetResult())
	}
	return results, nil
}

// record is the JSON payload of the i-th record.
func record(i int) *structpb.Value {
	value, err := structpb.NewValue(map[string]any{"seq": i, "from": "go"})
	if err != nil {
		panic(err) // only JSON-like values above
	}
	return value
}

// describe turns results into what a step prints of them.
func describe(results []*streamgatev1.Result) []map[string]any {
	described := make([]map[string]any, len(results))
	for i, result := range results {
		described[i] = map[string]any{
			"cursor":        result.GetCursor(),
			"event_id":      result.GetEventId(),
			"source_cursor": result.GetSourceCursor(),
			"data":          result.GetData().AsInterface(),
		}
	}
	return described
}

// apiKeyCredentials sends the API key as x-api-key metadata on every call.
type apiKeyCredentials string

func (key apiKeyCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"x-api-key": string(key)}, nil
}

// RequireTransportSecurity is false so that the key also goes over h2c (a
// local or in-cluster server); use TLS credentials when it crosses a network.
func (apiKeyCredentials) RequireTransportSecurity() bool { return false }

// emit prints one step as a JSON line on stdout.
func emit(step map[string]any) {
	line, err := json.Marshal(step)
	if err != nil {
		panic(err) // only JSON-like values are emitted
	}
	fmt.Println(string(line))
}

// fail prints the failed step as a JSON line (with the gRPC code when the
// error is a call's status) and exits with status 1.
func fail(step string, err error) {
	line := map[string]any{"step": step, "error": err.Error()}
	if s, ok := status.FromError(err); ok {
		line["code"] = s.Code().String()
		line["error"] = s.Message()
	}
	emit(line)
	os.Exit(1)
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
