import { create } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError, createClient, createHandlerContext, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as Status,
} from "../gen/grpc/health/v1/health_pb.js";
import type { HealthService } from "../src/rpc/health.js";
import { createHealthService } from "../src/rpc/health.js";

function setup(): { health: HealthService; client: ReturnType<typeof createClient<typeof Health>> } {
  const health = createHealthService();
  const client = createClient(
    Health,
    createRouterTransport((router) => health.routes(router)),
  );
  return { health, client };
}

/** Captures the implementation that routes() registers, to drive it directly. */
function implementationOf(health: HealthService): Partial<ServiceImpl<typeof Health>> {
  let impl: Partial<ServiceImpl<typeof Health>> | undefined;
  const router = {
    service(_service: unknown, implementation: Partial<ServiceImpl<typeof Health>>) {
      impl = implementation;
      return router;
    },
  };
  health.routes(router as unknown as ConnectRouter);
  expect(impl).toBeDefined();
  return impl!;
}

describe("health Check", () => {
  it("reports the whole server as SERVING", async () => {
    const { client } = setup();
    expect((await client.check({ service: "" })).status).toBe(Status.SERVING);
  });

  it("answers NOT_FOUND for an unknown service", async () => {
    const { client } = setup();
    const err = await client.check({ service: "nope.v1.Nope" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.NotFound);
    expect(err?.rawMessage).toBe(`unknown service "nope.v1.Nope"`);
  });

  it("reports services once set, and setAll changes every one", async () => {
    const { health, client } = setup();
    health.setStatus("streamgate.v1.StreamService", Status.SERVING);
    expect((await client.check({ service: "streamgate.v1.StreamService" })).status).toBe(Status.SERVING);
    health.setAll(Status.NOT_SERVING);
    expect((await client.check({ service: "" })).status).toBe(Status.NOT_SERVING);
    expect((await client.check({ service: "streamgate.v1.StreamService" })).status).toBe(Status.NOT_SERVING);
  });
});

describe("health Watch", () => {
  it("sends the current status, then each change", async () => {
    const { health, client } = setup();
    const abort = new AbortController();
    const stream = client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      expect((await stream.next()).value?.status).toBe(Status.SERVING);
      health.setStatus("", Status.NOT_SERVING);
      expect((await stream.next()).value?.status).toBe(Status.NOT_SERVING);
      health.setStatus("", Status.SERVING);
      expect((await stream.next()).value?.status).toBe(Status.SERVING);
    } finally {
      abort.abort();
    }
  });

  it("sends SERVICE_UNKNOWN for an unknown service, then its status once it is set", async () => {
    const { health, client } = setup();
    const abort = new AbortController();
    const stream = client.watch({ service: "later.v1.Later" }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      expect((await stream.next()).value?.status).toBe(Status.SERVICE_UNKNOWN);
      health.setStatus("later.v1.Later", Status.SERVING);
      expect((await stream.next()).value?.status).toBe(Status.SERVING);
    } finally {
      abort.abort();
    }
  });

  it("ends when the call's signal aborts", async () => {
    const health = createHealthService();
    const watch = implementationOf(health).watch!;
    const context = createHandlerContext({
      service: Health,
      method: Health.method.watch,
      protocolName: "grpc",
      requestMethod: "POST",
      url: "http://localhost/grpc.health.v1.Health/Watch",
    });
    const stream = watch(create(HealthCheckRequestSchema, { service: "" }), context)[Symbol.asyncIterator]();
    expect((await stream.next()).value).toEqual({ status: Status.SERVING });
    // The generator now waits for a change; aborting must wake it and end it
    // (running its cleanup) even though no status ever changes again.
    const pending = stream.next();
    context.abort();
    expect(await pending).toEqual({ done: true, value: undefined });
    // Changes after the end are not delivered anywhere (and do not throw).
    health.setStatus("", Status.NOT_SERVING);
  });
});
